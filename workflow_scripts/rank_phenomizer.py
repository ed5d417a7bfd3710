from mint.phenomizer import rank_cohort
from mint.workflow import step_log

with step_log(snakemake.log[0]):
    rank_cohort(snakemake.params.knowledge_dir, snakemake.params.cohort_dir, snakemake.output.rankings,
                mode=snakemake.params.mode)
