from mint.apps.tissue.teacher import rank_tissues
from mint.core.workflow import run_step

with run_step(snakemake):
    rank_tissues(snakemake.input.cases, snakemake.input.candidates, snakemake.input.nuclei, snakemake.input.model,
                 snakemake.output.rankings, threads=snakemake.params.threads)
