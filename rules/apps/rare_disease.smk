# The rare-disease application: HPO knowledge, the cohort (simulated, manifest or phenopackets),
# the note+photo teacher, the builtin text student, and the Phenomizer, retrieval and RAG
# baselines. Writes what the core rules read: results/cohort/*, results/rankings/teacher.parquet.


include: "rare_disease_common.smk"


rule build_knowledge:
    output:
        **knowledge_files(),
    log:
        "logs/build_knowledge/build_knowledge.log",
    benchmark:
        "benchmarks/build_knowledge.tsv"
    params:
        **STEP.params(
            face_roots=cfg("knowledge.face_roots"),
            default_frequency=cfg("knowledge.default_frequency"),
        ),
    conda:
        "../../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../../workflow_scripts/rare_disease/build_knowledge.py"


rule build_cohort:
    input:
        **knowledge_files(),
    output:
        **cohort_files(),
        vocabulary=VOCABULARY,
        excluded=EXCLUDED,
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
        "../../workflow_scripts/rare_disease/build_cohort.py"


rule embed_notes:
    input:
        cases=CASES,
    output:
        embeddings=EMBEDDINGS,
    log:
        "logs/embed_notes/embed_notes.log",
    benchmark:
        "benchmarks/embed_notes.tsv"
    params:
        **STEP.params(
            encoder=encoder_setting(),
            threads=cfg("teacher.threads"),
        ),
    conda:
        "../../envs/mint.yaml"
    threads: config["teacher"]["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../../workflow_scripts/rare_disease/embed_notes.py"


rule train_teacher:
    input:
        **cohort_files(),
        images=f"{COHORT}/images",
        embeddings=EMBEDDINGS,
    output:
        model=TEACHER_MODEL,
        metrics=report(f"{TEACHER}/metrics.json", caption="../../report/teacher.rst", category="Teacher"),
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
        "../../workflow_scripts/rare_disease/train_teacher.py"


if not external_rankings():

    rule rank_diseases:
        input:
            **cohort_files(),
            **(knowledge_files() if uses_knowledge(config) else {}),
            images=f"{COHORT}/images",
            embeddings=EMBEDDINGS,
            model=TEACHER_MODEL,
        output:
            **({"fusion": FUSION} if uses_knowledge(config) else {}),
            rankings=TEACHER_RANKINGS,
        log:
            "logs/rank_diseases/rank_diseases.log",
        benchmark:
            "benchmarks/rank_diseases.tsv"
        params:
            **STEP.params(
                image_size=cfg("teacher.image_size"),
                threads=cfg("teacher.threads"),
                knowledge=STEP.setting("teacher.knowledge[in use]", uses_knowledge(config)),
                seed=cfg("seed"),
                synthetic_sources=list(APP.synthetic_sources),
            ),
        conda:
            "../../envs/mint.yaml"
        threads: config["teacher"]["threads"]
        priority: 1  # on the way to the students' training (rules/core/train.smk)
        resources:
            mem_mb=4000,
            runtime=30,
        script:
            "../../workflow_scripts/rare_disease/rank_diseases.py"


rule build_student:
    input:
        **knowledge_files(),
        candidates=CANDIDATES,
        settings=builtin_student_settings(),
    output:
        model=directory(STUDENT_BASE),
    log:
        main="logs/build_student/build_student.log",
        curve="logs/build_student/pretrain_loss.jsonl",
    benchmark:
        "benchmarks/build_student.tsv"
    params:
        **builtin_student_params(k=cfg("preferences.k"), prompt=prompt()),
    conda:
        "../../envs/mint.yaml"
    threads: builtin_student_threads()
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../../workflow_scripts/rare_disease/build_student.py"


rule rank_phenomizer:
    input:
        **cohort_files(),
        annotations=knowledge_files()["annotations"],
        terms=knowledge_files()["terms"],
    output:
        rankings="results/rankings/phenomizer.parquet",
    log:
        "logs/rank_phenomizer/rank_phenomizer.log",
    benchmark:
        "benchmarks/rank_phenomizer.tsv"
    params:
        **STEP.params(
            mode=cfg("baselines.phenomizer_mode"),
            split=cfg("evaluation.split"),
        ),
    conda:
        "../../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../../workflow_scripts/rare_disease/rank_phenomizer.py"


rule rank_knn:
    input:
        **cohort_files(),
        embeddings=EMBEDDINGS,
    output:
        rankings="results/rankings/knn.parquet",
    log:
        "logs/rank_knn/rank_knn.log",
    params:
        **STEP.params(
            retriever=cfg("baselines.retriever"),
            neighbours=cfg("baselines.neighbours"),
            split=cfg("evaluation.split"),
        ),
    conda:
        "../../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../../workflow_scripts/rare_disease/rank_knn.py"


rule predict_rag:
    input:
        **cohort_files(),
        embeddings=EMBEDDINGS,
        model=rag_model_files,
    output:
        predictions="results/predict/{run}.parquet",
    log:
        "logs/predict_rag/{run}.log",
    benchmark:
        "benchmarks/predict_rag/{run}.tsv"
    params:
        **STEP.params(
            model=rag_model,
            method=run_method,
            prompt=prompt(),
            k=cfg("preferences.k"),
            retriever=cfg("baselines.retriever"),
            neighbours=cfg("baselines.neighbours"),
            rag_diseases=cfg("baselines.rag_diseases"),
            batch_size=cfg("evaluation.batch_size"),
            max_new_tokens=cfg("evaluation.max_new_tokens"),
            eval_threads=cfg("evaluation.threads"),
            seed=cfg("seed"),
            split=cfg("evaluation.split"),
        ),
    conda:
        "../../envs/mint.yaml"
    threads: config["evaluation"]["threads"]
    resources:
        mem_mb=16000,
        runtime=120,
        gpu=1,
    wildcard_constraints:
        run=APP.extra_runs,
    script:
        "../../workflow_scripts/rare_disease/predict_rag.py"
