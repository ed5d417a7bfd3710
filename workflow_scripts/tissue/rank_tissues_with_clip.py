from mint.apps.tissue.teacher import rank_tissues_with_clip
from mint.core.workflow import run_step

p = snakemake.params
with run_step(snakemake):
    rank_tissues_with_clip(snakemake.input.cases, snakemake.input.candidates, snakemake.output.rankings,
                           model=p.model, prompt_template=p.prompt_template, batch_size=p.batch_size, threads=p.threads)
