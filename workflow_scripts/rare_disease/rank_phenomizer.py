from mint.apps.rare_disease.phenomizer import rank_cohort
from mint.core.workflow import run_step

with run_step(snakemake):
    rank_cohort(snakemake.input.annotations, snakemake.input.terms, snakemake.input.cases,
                snakemake.input.candidates, snakemake.output.rankings, mode=snakemake.params.mode,
                split=snakemake.params.split)
