from mint.apps.tissue.cohort import build_cohort
from mint.core.workflow import step_log

out = snakemake.output
with step_log(snakemake.log[0]):
    build_cohort(cases_path=out.cases, candidates_path=out.candidates, excluded_path=out.excluded,
                 nuclei_path=out.nuclei, images_dir=out.images, cohort=snakemake.params.cohort,
                 seed=snakemake.params.seed)
