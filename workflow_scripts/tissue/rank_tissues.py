from mint.apps.tissue.teacher import rank_tissues
from mint.core.workflow import step_log

with step_log(snakemake.log[0]):
    rank_tissues(snakemake.input.cases, snakemake.input.candidates, snakemake.input.nuclei, snakemake.input.model,
                 snakemake.output.rankings, threads=snakemake.params.threads)
