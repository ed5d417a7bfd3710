from mint.core.rankings import import_rankings
from mint.core.workflow import run_step

with run_step(snakemake):
    import_rankings(snakemake.input.external, snakemake.input.cases, snakemake.input.candidates,
                    snakemake.output.rankings)
