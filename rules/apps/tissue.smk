# The tissue application: H&E patches with nucleus masks (simulated, PanNuke or a manifest), the
# teacher config teacher.model selects (the image+nuclei teacher trained here, a CLIP checkpoint
# such as PLIP, or external rankings: rules/core/teacher.smk), and the builtin vision student.
# Writes what the core rules read: results/cohort/*, results/rankings/teacher.parquet.


include: "tissue_common.smk"


rule build_cohort:
    output:
        **cohort_files(),
        excluded=EXCLUDED,
        nuclei=NUCLEI,
        images=directory(f"{COHORT}/images"),
    log:
        "logs/build_cohort/build_cohort.log",
    benchmark:
        "benchmarks/build_cohort.tsv"
    params:
        **STEP.params(
            cohort=cfg("cohort"),
            seed=cfg("seed"),
            **input_settings(),
        ),
    conda:
        "../../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../../workflow_scripts/tissue/build_cohort.py"


rule embed_texts:
    input:
        **cohort_files(),
    output:
        embeddings=TEXT_EMBEDDINGS,
    log:
        "logs/embed_texts/embed_texts.log",
    benchmark:
        "benchmarks/embed_texts.tsv"
    params:
        **STEP.params(
            encoder=encoder_setting(),
            prompt_template=cfg("teacher.prompt_template"),
            threads=cfg("teacher.threads"),
        ),
    conda:
        "../../envs/mint.yaml"
    threads: config["teacher"]["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../../workflow_scripts/tissue/embed_texts.py"


rule train_teacher:
    input:
        **cohort_files(),
        images=f"{COHORT}/images",
        nuclei=NUCLEI,
        embeddings=TEXT_EMBEDDINGS,
    output:
        model=TEACHER_MODEL,
        metrics=f"{TEACHER}/metrics.json",
    log:
        "logs/train_teacher/train_teacher.log",
    benchmark:
        "benchmarks/train_teacher.tsv"
    params:
        **STEP.params(
            teacher=teacher_training(TEACHER_TRAINING),
            seed=cfg("seed"),
        ),
    conda:
        "../../envs/mint.yaml"
    threads: config["teacher"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../../workflow_scripts/tissue/train_teacher.py"


if teacher_model() == "trained":

    rule rank_tissues:
        input:
            **cohort_files(),
            images=f"{COHORT}/images",
            nuclei=NUCLEI,
            model=TEACHER_MODEL,
        output:
            rankings=TEACHER_RANKINGS,
        log:
            "logs/rank_tissues/rank_tissues.log",
        benchmark:
            "benchmarks/rank_tissues.tsv"
        params:
            **STEP.params(
                threads=cfg("teacher.threads"),
            ),
        conda:
            "../../envs/mint.yaml"
        threads: config["teacher"]["threads"]
        priority: 1  # on the way to the students' training (rules/core/train.smk)
        resources:
            mem_mb=4000,
            runtime=30,
        script:
            "../../workflow_scripts/tissue/rank_tissues.py"


if teacher_model() == "clip":

    rule rank_tissues_with_clip:
        input:
            **cohort_files(),
            images=f"{COHORT}/images",
            model=clip_files(),
        output:
            rankings=TEACHER_RANKINGS,
        log:
            "logs/rank_tissues_with_clip/rank_tissues_with_clip.log",
        benchmark:
            "benchmarks/rank_tissues_with_clip.tsv"
        params:
            **STEP.params(
                model=model_setting("teacher.clip.model", CLIP),
                prompt_template=cfg("teacher.prompt_template"),
                batch_size=cfg("teacher.clip.batch_size"),
                threads=cfg("teacher.threads"),
            ),
        conda:
            "../../envs/mint.yaml"
        threads: config["teacher"]["threads"]
        priority: 1  # on the way to the students' training (rules/core/train.smk)
        resources:
            mem_mb=8000,
            runtime=60,
        script:
            "../../workflow_scripts/tissue/rank_tissues_with_clip.py"


rule build_student:
    input:
        cases=CASES,
        images=f"{COHORT}/images",
        settings=builtin_student_settings(),
    output:
        model=directory(STUDENT_BASE),
    log:
        main="logs/build_student/build_student.log",
        curve="logs/build_student/pretrain_loss.jsonl",
    benchmark:
        "benchmarks/build_student.tsv"
    params:
        **builtin_student_params(),
    conda:
        "../../envs/mint.yaml"
    threads: builtin_student_threads()
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../../workflow_scripts/tissue/build_student.py"
