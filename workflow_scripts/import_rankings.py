from mint.teacher import import_rankings
from mint.workflow import step_log

with step_log(snakemake.log[0]):
    import_rankings(snakemake.config, snakemake.params.cohort_dir, snakemake.output.rankings)
