from mint.core.rankings import import_rankings
from mint.core.workflow import step_log

with step_log(snakemake.log[0]):
    import_rankings(snakemake.input.external, snakemake.input.cases, snakemake.input.candidates,
                    snakemake.output.rankings)
