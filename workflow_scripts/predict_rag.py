from mint.rag import predict_rag
from mint.workflow import step_log

with step_log(snakemake.log[0]):
    predict_rag(snakemake.config, snakemake.params.model, snakemake.params.cohort_dir, snakemake.input.embeddings,
                f"rag_{snakemake.wildcards.student}", snakemake.output.predictions)
