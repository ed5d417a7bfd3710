from mint.rag import knn_rankings
from mint.workflow import step_log

with step_log(snakemake.log[0]):
    knn_rankings(snakemake.config, snakemake.params.cohort_dir, snakemake.input.embeddings, snakemake.output.rankings)
