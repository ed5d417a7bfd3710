from mint.predict import predict
from mint.workflow import step_log

with step_log(snakemake.log[0]):
    predict(snakemake.config, snakemake.params.model, snakemake.params.cohort_dir, snakemake.wildcards.method,
            snakemake.output.predictions)
