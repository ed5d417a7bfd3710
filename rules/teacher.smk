rule embed_notes:
    input:
        unpack(cohort_files),
    output:
        embeddings=f"{TEACHER}/note_embeddings.parquet",
    log:
        "logs/embed_notes/embed_notes.log",
    benchmark:
        "benchmarks/embed_notes.tsv"
    params:
        cohort_dir=parent("cases"),
        encoder=config["teacher"]["encoder"],
    conda:
        "../envs/mint.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../workflow_scripts/embed_notes.py"


rule train_teacher:
    input:
        unpack(cohort_files),
        images=f"{COHORT}/images",
        embeddings=rules.embed_notes.output.embeddings,
    output:
        model=f"{TEACHER}/model.pt",
        metrics=report(f"{TEACHER}/metrics.json", caption="../report/teacher.rst", category="Teacher"),
    log:
        "logs/train_teacher/train_teacher.log",
    benchmark:
        "benchmarks/train_teacher.tsv"
    params:
        cohort_dir=parent("cases"),
        out_dir=parent("model", io="output"),
        teacher=config["teacher"],
        seed=config["seed"],
    conda:
        "../envs/mint.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../workflow_scripts/train_teacher.py"


if external_rankings():

    rule import_rankings:
        input:
            unpack(cohort_files),
            external=config["teacher"]["rankings"],
        output:
            rankings="results/rankings/teacher.parquet",
        log:
            "logs/import_rankings/import_rankings.log",
        params:
            cohort_dir=parent("cases"),
        conda:
            "../envs/mint.yaml"
        resources:
            mem_mb=4000,
            runtime=10,
        script:
            "../workflow_scripts/import_rankings.py"

else:

    rule rank_diseases:
        input:
            unpack(cohort_files),
            images=f"{COHORT}/images",
            embeddings=rules.embed_notes.output.embeddings,
            model=rules.train_teacher.output.model,
        output:
            rankings="results/rankings/teacher.parquet",
        log:
            "logs/rank_diseases/rank_diseases.log",
        benchmark:
            "benchmarks/rank_diseases.tsv"
        params:
            cohort_dir=parent("cases"),
        conda:
            "../envs/mint.yaml"
        threads: 2
        resources:
            mem_mb=4000,
            runtime=30,
        script:
            "../workflow_scripts/rank_diseases.py"
