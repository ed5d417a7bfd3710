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
        **STEP.params(
            modality=pair_modality(),
            prompt=prompt(),
            text_field=APP.student_text,
            image_field=APP.student_image,
            k=cfg("preferences.k"),
            q=cfg("preferences.q"),
            chosen=cfg("preferences.chosen"),
            mass=cfg("preferences.mass"),
            rejected=cfg("preferences.rejected"),
            truth_in_chosen=cfg("preferences.truth_in_chosen"),
            sft_target=cfg("preferences.sft_target"),
            seed=cfg("seed"),
        ),
    conda:
        "../../envs/mint.yaml"
    priority: 1  # on the way to the students' training (rules/core/train.smk)
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../../workflow_scripts/build_preferences.py"


# `preferences.student_errors`: the SFT student of each seed ranks the training cases (its best k + q + 1
# labels, enough for q after leaving out the chosen ones and the truth), and its own mistakes become the
# rejected lists of that seed's preference methods.
rule rank_training_cases:
    input:
        **cohort_files(),
        model="results/train/seed{seed}/sft",
    output:
        rankings="results/panel_train/seed{seed}/sft.parquet",
    log:
        "logs/rank_training_cases/seed{seed}/sft.log",
    benchmark:
        "benchmarks/rank_training_cases/seed{seed}/sft.tsv"
    params:
        **panel_ranking_params(
            split="train",
            top=config["preferences"]["k"] + config["preferences"]["q"] + 1,
            model=lambda wildcards: trained("sft", wildcards.seed),
        ),
    conda:
        "../../envs/mint.yaml"
    threads: config["evaluation"]["threads"]
    priority: 1  # on the way to the students' training
    resources:
        mem_mb=16000,
        runtime=120,
        gpu=1,
    wildcard_constraints:
        seed=r"\d+",
    script:
        "../../workflow_scripts/rank_student.py"


rule build_student_error_pairs:
    input:
        cases=CASES,
        candidates=CANDIDATES,
        preferences="results/preferences/preferences.parquet",
        student="results/panel_train/seed{seed}/sft.parquet",
    output:
        preferences="results/preferences/seed{seed}/preferences.parquet",
    log:
        "logs/build_student_error_pairs/seed{seed}.log",
    params:
        **STEP.params(
            header=APP.prompt.header,
            q=cfg("preferences.q"),
        ),
    conda:
        "../../envs/mint.yaml"
    priority: 1  # on the way to the students' training
    resources:
        mem_mb=4000,
        runtime=10,
    wildcard_constraints:
        seed=r"\d+",
    script:
        "../../workflow_scripts/build_student_error_pairs.py"
