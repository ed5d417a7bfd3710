from mint.train import train_student
from mint.workflow import step_log

with step_log(snakemake.log[0]):
    train_student(snakemake.input.recipe, snakemake.params.base, snakemake.input.data, snakemake.output.model,
                  init_dir=snakemake.params.init, checkpoint_dir=snakemake.params.checkpoints,
                  threads=snakemake.threads)
