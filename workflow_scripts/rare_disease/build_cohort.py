from mint.apps.rare_disease.cohort import build_cohort
from mint.core.workflow import run_step

out = snakemake.output
with run_step(snakemake):
    build_cohort(snakemake.input, cases_path=out.cases, candidates_path=out.candidates, vocabulary_path=out.vocabulary,
                 excluded_path=out.excluded, images_dir=out.images, cohort=snakemake.params.cohort,
                 seed=snakemake.params.seed)
