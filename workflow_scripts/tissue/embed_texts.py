from mint.apps.tissue.teacher import write_text_embeddings
from mint.core.workflow import step_log

p = snakemake.params
with step_log(snakemake.log[0]):
    write_text_embeddings(snakemake.input.cases, snakemake.input.candidates, snakemake.output.embeddings,
                          encoder=p.encoder, prompt_template=p.prompt_template, threads=p.threads)
