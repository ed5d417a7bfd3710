import json

from mint.core.panel import rank_panel
from mint.core.workflow import run_step

p = snakemake.params
with run_step(snakemake):
    rank_panel(p.model, snakemake.input.cases, snakemake.input.candidates, snakemake.output.rankings,
               prompt=json.loads(p.prompt), text_field=p.text_field, image_field=p.image_field, kind=p.kind, k=p.k,
               batch_size=p.batch_size, threads=p.eval_threads, split=p.split, top=p.top)
