from mint.report import score_teacher
from mint.workflow import step_log

with step_log(snakemake.log[0]):
    score_teacher(snakemake.config, snakemake.params.cohort_dir, snakemake.input.rankings,
                  snakemake.wildcards.baseline, snakemake.output.scores, method=snakemake.wildcards.baseline)
