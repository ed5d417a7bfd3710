from mint.apps.tissue.cohort import build_cohort
from mint.core.workflow import run_step

out = snakemake.output
with run_step(snakemake):
    build_cohort(cases_path=out.cases, candidates_path=out.candidates, excluded_path=out.excluded,
                 nuclei_path=out.nuclei, images_dir=out.images, cohort=snakemake.params.cohort,
                 seed=snakemake.params.seed)
