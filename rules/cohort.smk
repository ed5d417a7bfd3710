rule build_cohort:
    input:
        unpack(knowledge_files),
    output:
        **cohort_files(),
        excluded=excluded_file(),
        images=directory(f"{COHORT}/images"),
    log:
        "logs/build_cohort/build_cohort.log",
    benchmark:
        "benchmarks/build_cohort.tsv"
    params:
        knowledge_dir=parent("diseases"),
        out_dir=parent("cases", io="output"),
        cohort=config["cohort"],
        seed=config["seed"],
    conda:
        "../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../workflow_scripts/build_cohort.py"
