from mint.rag import predict_rag
from mint.workflow import step_log

with step_log(snakemake.log[0]):
    predict_rag(snakemake.config, snakemake.params.model, snakemake.params.cohort_dir, snakemake.input.embeddings,
                snakemake.params.method, snakemake.output.predictions)
