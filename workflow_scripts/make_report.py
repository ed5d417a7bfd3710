from mint.report import make_report
from mint.workflow import step_log

with step_log(snakemake.log[0]):
    make_report(snakemake.config, snakemake.input.scores, snakemake.input.train, snakemake.input.get("teacher"),
                snakemake.params.out_dir, cohort_dir=snakemake.params.cohort_dir)
