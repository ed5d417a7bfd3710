from mint.apps.tissue.teacher import train_teacher
from mint.core.workflow import run_step

with run_step(snakemake):
    train_teacher(snakemake.input.cases, snakemake.input.candidates, snakemake.input.nuclei,
                  snakemake.input.embeddings, snakemake.output.model, snakemake.output.metrics,
                  settings=snakemake.params.teacher, seed=snakemake.params.seed)
