from mint.apps.rare_disease.cohort import build_cohort
from mint.core.workflow import step_log

out = snakemake.output
with step_log(snakemake.log[0]):
    build_cohort(snakemake.input, cases_path=out.cases, candidates_path=out.candidates, vocabulary_path=out.vocabulary,
                 excluded_path=out.excluded, images_dir=out.images, cohort=snakemake.params.cohort,
                 seed=snakemake.params.seed)
