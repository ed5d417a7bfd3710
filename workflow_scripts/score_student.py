from mint.core.app import load_application
from mint.core.report import score_student
from mint.core.workflow import run_step

p = snakemake.params
with run_step(snakemake):
    score_student(snakemake.input.cases, snakemake.input.candidates, snakemake.input.vocabulary,
                  snakemake.input.predictions, snakemake.output.scores, k=p.k, header=p.header,
                  fuzzy_cutoff=p.fuzzy_cutoff, normalise=load_application(p.application).normalise, seed=p.seed,
                  split=p.split)
