from mint.apps.rare_disease.rag import knn_rankings
from mint.core.workflow import run_step

with run_step(snakemake):
    knn_rankings(snakemake.input.cases, snakemake.input.candidates, snakemake.input.embeddings,
                 snakemake.output.rankings, retriever=snakemake.params.retriever,
                 n_neighbours=snakemake.params.neighbours, split=snakemake.params.split)
