from mint.teacher import train_teacher
from mint.workflow import step_log

with step_log(snakemake.log[0]):
    train_teacher(snakemake.config, snakemake.params.cohort_dir, snakemake.input.embeddings, snakemake.params.out_dir)
