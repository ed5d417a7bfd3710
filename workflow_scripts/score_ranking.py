from mint.core.report import score_ranker
from mint.core.workflow import step_log

p = snakemake.params
with step_log(snakemake.log[0]):
    score_ranker(snakemake.input.cases, snakemake.input.rankings, snakemake.output.scores, modality=p.modality,
                 method=p.method, k=p.k, split=p.split)
