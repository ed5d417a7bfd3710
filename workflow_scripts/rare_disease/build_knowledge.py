from mint.apps.rare_disease.knowledge import build_knowledge
from mint.core.workflow import run_step

with run_step(snakemake):
    build_knowledge(snakemake.output.diseases, snakemake.output.annotations, snakemake.output.terms,
                    face_roots=snakemake.params.face_roots, default_frequency=snakemake.params.default_frequency)
