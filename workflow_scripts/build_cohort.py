from mint.cohort import build_cohort
from mint.workflow import step_log

with step_log(snakemake.log[0]):
    build_cohort(snakemake.config, snakemake.params.knowledge_dir, snakemake.params.out_dir)
