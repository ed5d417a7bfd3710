rule predict_student:
    input:
        unpack(cohort_files),
        model=predict_model_files,
        accelerate=config["training"]["accelerate"],
    output:
        predictions="results/predict/{run}.parquet",
    log:
        "logs/predict_student/{run}.log",
    benchmark:
        "benchmarks/predict_student/{run}.tsv"
    params:
        model=predict_model,
        cohort_dir=parent("cases"),
        settings=predict_settings(),
        method=run_method,
    conda:
        "../envs/mint.yaml"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=120,
        gpu=1,
    wildcard_constraints:
        run=PREDICT_RUN,
    shell:
        # The test cases are shared out over one process per GPU (CPU: one process); see mint/launch.py.
        "PROCESSES=$(python -m mint.launch {resources.gpu}); "
        "accelerate launch --config_file {input.accelerate:q} $PROCESSES -m mint.predict "
        "{params.model:q} {params.cohort_dir:q} {output.predictions:q} --settings {params.settings:q} "
        "--method {params.method} --log {log:q}"


rule score_student:
    input:
        unpack(knowledge_files),
        unpack(cohort_files),
        predictions="results/predict/{run}.parquet",
    output:
        scores="results/scores/{run}.parquet",
    log:
        "logs/score_student/{run}.log",
    params:
        knowledge_dir=parent("diseases"),
        cohort_dir=parent("cases"),
        evaluation=config["evaluation"],
        seed=run_seed,
    conda:
        "../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    wildcard_constraints:
        run=SCORE_RUN,
    script:
        "../workflow_scripts/score_student.py"


rule score_teacher:
    input:
        unpack(cohort_files),
        rankings="results/rankings/teacher.parquet",
    output:
        scores="results/scores/teacher_{modality}.parquet",
    log:
        "logs/score_teacher/{modality}.log",
    params:
        cohort_dir=parent("cases"),
        evaluation=config["evaluation"],
    conda:
        "../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    wildcard_constraints:
        modality="note_photo|note|photo|external",
    script:
        "../workflow_scripts/score_teacher.py"
