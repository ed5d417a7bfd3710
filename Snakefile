# MINT: Multimodal Integrated kNowledge Transfer (arXiv 2505.05736) as a Snakemake workflow.
# Run the embedded default:  make demo   (or: snakemake --cores 2)
# The core rules (rules/core/) are shared by every application; the application that config key
# `application` selects adds its own (rules/apps/<name>.smk): cohort, teacher, baselines.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/rare_disease/default.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: str(APP.rules)
include: "rules/core/teacher.smk"
include: "rules/core/preferences.smk"
include: "rules/core/train.smk"
include: "rules/core/evaluate.smk"
include: "rules/core/report.smk"


# Every step checks that its inputs were made with the settings the config now gives (mint.core.steps).
os.environ[ENV_EXPECTED] = canonical(STEP.expected())


rule all:
    input:
        report_files(),
    default_target: True
