rule predict_student:
    input:
        unpack(cohort_files),
        model=predict_model_files,
    output:
        predictions="results/predict/{method}.parquet",
    log:
        "logs/predict_student/{method}.log",
    benchmark:
        "benchmarks/predict_student/{method}.tsv"
    params:
        model=predict_model,
        cohort_dir=parent("cases"),
        evaluation=config["evaluation"],
        prompt=config["prompt"],
        k=config["preferences"]["k"],
    conda:
        "../envs/mint.yaml"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=120,
        gpu=1,
    wildcard_constraints:
        method="base|sft|dpo|orpo",
    script:
        "../workflow_scripts/predict_student.py"


rule score_student:
    input:
        unpack(knowledge_files),
        unpack(cohort_files),
        predictions="results/predict/{method}.parquet",
    output:
        scores="results/scores/{method}.parquet",
    log:
        "logs/score_student/{method}.log",
    params:
        knowledge_dir=parent("diseases"),
        cohort_dir=parent("cases"),
        evaluation=config["evaluation"],
    conda:
        "../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    wildcard_constraints:
        method="base|sft|dpo|orpo|rag_base|rag_sft",
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
