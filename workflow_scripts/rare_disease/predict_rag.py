import json

from mint.apps.rare_disease.rag import predict_rag
from mint.core.workflow import run_step

p = snakemake.params
with run_step(snakemake):
    predict_rag(p.model, snakemake.input.cases, snakemake.input.candidates, snakemake.input.embeddings,
                snakemake.output.predictions, method=p.method, prompt=json.loads(p.prompt), k=p.k,
                retriever=p.retriever, n_neighbours=p.neighbours, rag_diseases=p.rag_diseases,
                batch_size=p.batch_size, max_new_tokens=p.max_new_tokens, threads=p.eval_threads, seed=p.seed,
                split=p.split)
