from mint.apps.tissue.teacher import write_text_embeddings
from mint.core.workflow import run_step

p = snakemake.params
with run_step(snakemake):
    write_text_embeddings(snakemake.input.cases, snakemake.input.candidates, snakemake.output.embeddings,
                          encoder=p.encoder, prompt_template=p.prompt_template, threads=p.threads)
