import json

from mint.apps.rare_disease.student import build_builtin_student
from mint.core.config import load_yaml
from mint.core.io import read_parquet
from mint.core.workflow import run_step

p = snakemake.params
with run_step(snakemake, snakemake.log.main):
    settings = load_yaml(snakemake.input.settings[0]) if snakemake.input.settings else {}
    build_builtin_student(snakemake.input, read_parquet(snakemake.input.candidates), settings,
                          snakemake.output.model, snakemake.log.curve, k=p.k, prompt=json.loads(p.prompt))
