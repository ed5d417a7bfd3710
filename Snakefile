# MINT: Multimodal Integrated kNowledge Transfer (arXiv 2505.05736) as a Snakemake workflow.
# Run the embedded default:  make demo   (or: snakemake --cores 2)
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/knowledge.smk"
include: "rules/cohort.smk"
include: "rules/teacher.smk"
include: "rules/preferences.smk"
include: "rules/student.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/baselines.smk"
include: "rules/report.smk"


rule all:
    input:
        report_files(),
    default_target: True
