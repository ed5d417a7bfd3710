from mint.teacher import write_embeddings
from mint.workflow import step_log

with step_log(snakemake.log[0]):
    write_embeddings(snakemake.config, snakemake.params.cohort_dir, snakemake.output.embeddings)
