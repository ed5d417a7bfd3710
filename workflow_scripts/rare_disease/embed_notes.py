from mint.apps.rare_disease.teacher import write_embeddings
from mint.core.workflow import run_step

with run_step(snakemake):
    write_embeddings(snakemake.input.cases, snakemake.output.embeddings, encoder=snakemake.params.encoder,
                     threads=snakemake.params.threads)
