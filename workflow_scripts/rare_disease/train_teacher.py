from mint.apps.rare_disease.teacher import train_teacher
from mint.core.workflow import run_step

with run_step(snakemake):
    train_teacher(snakemake.input.cases, snakemake.input.candidates, snakemake.input.embeddings,
                  snakemake.output.model, snakemake.output.metrics, teacher=snakemake.params.teacher,
                  seed=snakemake.params.seed)
