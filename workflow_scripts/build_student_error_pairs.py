from mint.core.preferences import build_student_error_pairs
from mint.core.workflow import run_step

p = snakemake.params
with run_step(snakemake):
    build_student_error_pairs(snakemake.input.preferences, snakemake.input.cases, snakemake.input.candidates,
                              snakemake.input.student, snakemake.output.preferences, header=p.header, q=p.q)
