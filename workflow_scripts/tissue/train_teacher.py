from mint.apps.tissue.teacher import train_teacher
from mint.core.workflow import step_log

with step_log(snakemake.log[0]):
    train_teacher(snakemake.input.cases, snakemake.input.candidates, snakemake.input.nuclei,
                  snakemake.input.embeddings, snakemake.output.model, snakemake.output.metrics,
                  settings=snakemake.params.teacher, seed=snakemake.params.seed)
