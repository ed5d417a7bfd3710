import json

from mint.core.preferences import build_preferences
from mint.core.workflow import run_step

p = snakemake.params
with run_step(snakemake):
    build_preferences(snakemake.input.cases, snakemake.input.candidates, snakemake.input.rankings,
                      snakemake.output.preferences, snakemake.output.sft, modality=p.modality,
                      prompt=json.loads(p.prompt), text_field=p.text_field, k=p.k, q=p.q, chosen=p.chosen,
                      mass=p.mass, rejected=p.rejected, truth_in_chosen=p.truth_in_chosen,
                      sft_target_kind=p.sft_target, seed=p.seed, image_field=p.image_field)
