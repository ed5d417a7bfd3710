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
        face_roots=config["knowledge"]["face_roots"],
        default_frequency=config["knowledge"]["default_frequency"],
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
        cohort=config["cohort"],
        seed=config["seed"],
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
        encoder=config["teacher"]["encoder"],
        threads=config["teacher"]["threads"],
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
        teacher={k: config["teacher"][k] for k in TEACHER_TRAINING},
        seed=config["seed"],
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
            image_size=config["teacher"]["image_size"],
            threads=config["teacher"]["threads"],
            knowledge=uses_knowledge(config),
            seed=config["seed"],
            synthetic_sources=list(APP.synthetic_sources),
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
        mode=config["baselines"]["phenomizer_mode"],
        split=config["evaluation"]["split"],
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
        retriever=config["baselines"]["retriever"],
        neighbours=config["baselines"]["neighbours"],
        split=config["evaluation"]["split"],
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
        model=predict_model,
        method=run_method,
        prompt=lambda wildcards: prompt(),  # a function: the template's {braces} are not wildcards
        k=config["preferences"]["k"],
        retriever=config["baselines"]["retriever"],
        neighbours=config["baselines"]["neighbours"],
        rag_diseases=config["baselines"]["rag_diseases"],
        batch_size=config["evaluation"]["batch_size"],
        max_new_tokens=config["evaluation"]["max_new_tokens"],
        eval_threads=config["evaluation"]["threads"],
        seed=config["seed"],
        split=config["evaluation"]["split"],
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
