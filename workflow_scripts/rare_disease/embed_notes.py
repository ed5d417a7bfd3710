from mint.apps.rare_disease.teacher import write_embeddings
from mint.core.workflow import step_log

with step_log(snakemake.log[0]):
    write_embeddings(snakemake.input.cases, snakemake.output.embeddings, encoder=snakemake.params.encoder,
                     threads=snakemake.params.threads)
