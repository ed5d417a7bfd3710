rule build_preferences:
    input:
        unpack(cohort_files),
        rankings="results/rankings/teacher.parquet",
    output:
        preferences="results/preferences/preferences.parquet",
        sft="results/preferences/sft.parquet",
    log:
        "logs/build_preferences/build_preferences.log",
    params:
        cohort_dir=parent("cases"),
        out_dir=parent("preferences", io="output"),
        preferences=config["preferences"],
        prompt=config["prompt"],
        seed=config["seed"],
    conda:
        "../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../workflow_scripts/build_preferences.py"
