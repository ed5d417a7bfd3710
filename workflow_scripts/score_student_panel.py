from mint.core.panel import MODALITY
from mint.core.report import score_ranker
from mint.core.workflow import step_log

p = snakemake.params
with step_log(snakemake.log[0]):
    score_ranker(snakemake.input.cases, snakemake.input.rankings, snakemake.output.scores, modality=MODALITY,
                 method=p.method, k=p.k, seed=p.seed, split=p.split)
