# Comparison rows beyond the students: a phenotype-similarity ranker, retrieval alone, and RAG.
rule rank_phenomizer:
    input:
        unpack(knowledge_files),
        unpack(cohort_files),
    output:
        rankings="results/rankings/phenomizer.parquet",
    log:
        "logs/rank_phenomizer/rank_phenomizer.log",
    benchmark:
        "benchmarks/rank_phenomizer.tsv"
    params:
        knowledge_dir=parent("diseases"),
        cohort_dir=parent("cases"),
        mode=config["baselines"]["phenomizer_mode"],
    conda:
        "../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../workflow_scripts/rank_phenomizer.py"


rule rank_knn:
    input:
        unpack(cohort_files),
        embeddings=rules.embed_notes.output.embeddings,
    output:
        rankings="results/rankings/knn.parquet",
    log:
        "logs/rank_knn/rank_knn.log",
    params:
        cohort_dir=parent("cases"),
        baselines=config["baselines"],
    conda:
        "../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../workflow_scripts/rank_knn.py"


rule score_baseline:
    input:
        unpack(cohort_files),
        rankings="results/rankings/{baseline}.parquet",
    output:
        scores="results/scores/{baseline}.parquet",
    log:
        "logs/score_baseline/{baseline}.log",
    params:
        cohort_dir=parent("cases"),
        evaluation=config["evaluation"],
    conda:
        "../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    wildcard_constraints:
        baseline="phenomizer|knn",
    script:
        "../workflow_scripts/score_baseline.py"


rule predict_rag:
    input:
        unpack(cohort_files),
        embeddings=rules.embed_notes.output.embeddings,
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
        cohort_dir=parent("cases"),
        baselines=config["baselines"],
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
        run=RAG_RUN,
    script:
        "../workflow_scripts/predict_rag.py"
