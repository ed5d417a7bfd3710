from mint.core.preferences import build_student_error_pairs
from mint.core.workflow import step_log

p = snakemake.params
with step_log(snakemake.log[0]):
    build_student_error_pairs(snakemake.input.preferences, snakemake.input.cases, snakemake.input.candidates,
                              snakemake.input.student, snakemake.output.preferences, header=p.header, q=p.q)
