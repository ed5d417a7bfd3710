import json

from mint.core.panel import rank_panel
from mint.core.workflow import step_log

p = snakemake.params
with step_log(snakemake.log[0]):
    rank_panel(p.model, snakemake.input.cases, snakemake.input.candidates, snakemake.output.rankings,
               prompt=json.loads(p.prompt), text_field=p.text_field, image_field=p.image_field, k=p.k,
               batch_size=p.batch_size, threads=p.eval_threads, split=p.split, top=p.top)
