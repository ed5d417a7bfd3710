from mint.teacher import rank_diseases
from mint.workflow import step_log

with step_log(snakemake.log[0]):
    rank_diseases(snakemake.config, snakemake.params.cohort_dir, snakemake.input.embeddings, snakemake.input.model,
                  snakemake.output.rankings)
