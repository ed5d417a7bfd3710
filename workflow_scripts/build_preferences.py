from mint.preferences import build_preferences
from mint.workflow import step_log

with step_log(snakemake.log[0]):
    build_preferences(snakemake.config, snakemake.params.cohort_dir, snakemake.input.rankings, snakemake.params.out_dir)
