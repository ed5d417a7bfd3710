from mint.core.report import score_ranker
from mint.core.workflow import run_step

p = snakemake.params
with run_step(snakemake):
    score_ranker(snakemake.input.cases, snakemake.input.rankings, snakemake.output.scores, modality=p.modality,
                 method=p.method, k=p.k, split=p.split)
