from mint.report import score_student
from mint.workflow import step_log

with step_log(snakemake.log[0]):
    score_student(snakemake.config, snakemake.params.knowledge_dir, snakemake.params.cohort_dir,
                  snakemake.input.predictions, snakemake.output.scores, seed=snakemake.params.seed)
