rule build_preferences:
    input:
        **cohort_files(),
        rankings=TEACHER_RANKINGS,
    output:
        preferences="results/preferences/preferences.parquet",
        sft="results/preferences/sft.parquet",
    log:
        "logs/build_preferences/build_preferences.log",
    params:
        modality=pair_modality(),
        prompt=lambda wildcards: prompt(),  # a function: the template's {braces} are not wildcards
        text_field=APP.student_text,
        image_field=APP.student_image,
        k=config["preferences"]["k"],
        q=config["preferences"]["q"],
        chosen=config["preferences"]["chosen"],
        mass=config["preferences"]["mass"],
        rejected=config["preferences"]["rejected"],
        truth_in_chosen=config["preferences"]["truth_in_chosen"],
        sft_target=config["preferences"]["sft_target"],
        seed=config["seed"],
    conda:
        "../../envs/mint.yaml"
    priority: 1  # on the way to the students' training (rules/core/train.smk)
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../../workflow_scripts/build_preferences.py"
