from mint.config import load_yaml
from mint.io import read_parquet
from mint.student import build_builtin_student
from mint.workflow import step_log

with step_log(snakemake.log.main):
    build_builtin_student(snakemake.params.knowledge_dir, read_parquet(snakemake.input.panel),
                          load_yaml(snakemake.input.settings), snakemake.output.model, snakemake.log.curve)
