from mint.apps.rare_disease.teacher import rank_diseases
from mint.core.workflow import step_log

with step_log(snakemake.log[0]):
    rank_diseases(snakemake.input.cases, snakemake.input.candidates, snakemake.input.embeddings,
                  snakemake.input.model, snakemake.output.rankings, image_size=snakemake.params.image_size,
                  threads=snakemake.params.threads)
