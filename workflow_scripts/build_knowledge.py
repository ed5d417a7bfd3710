from mint.knowledge import build_knowledge
from mint.workflow import step_log

with step_log(snakemake.log[0]):
    build_knowledge(snakemake.params.out_dir, **snakemake.params.knowledge)
