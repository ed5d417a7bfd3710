from pathlib import Path

from mint.core.app import load_application
from mint.core.report import make_report
from mint.core.workflow import run_step

p = snakemake.params
with run_step(snakemake):
    make_report(snakemake.input.scores, snakemake.input.train, Path(snakemake.output.summary).parent,
                app=load_application(p.application), k=p.k, ks=p.ks, n_boot=p.bootstrap, seed=p.seed,
                teacher_metrics=snakemake.input.teacher[0] if snakemake.input.teacher else None,
                cases_path=snakemake.input.cases, candidates_path=snakemake.input.candidates,
                excluded_path=snakemake.input.excluded, rankings_path=snakemake.input.rankings,
                modality=p.modality, q=p.q, teacher_description=p.teacher_description,
                split=p.split)
