rule build_student:
    input:
        unpack(knowledge_files),
        panel=f"{COHORT}/panel.parquet",
        settings=config["student"]["builtin"],
    output:
        model=directory(STUDENT_BASE),
    log:
        main="logs/build_student/build_student.log",
        curve="logs/build_student/pretrain_loss.jsonl",
    benchmark:
        "benchmarks/build_student.tsv"
    params:
        knowledge_dir=parent("diseases"),
        k=config["preferences"]["k"],
        prompt=config["prompt"],
    conda:
        "../envs/mint.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../workflow_scripts/build_student.py"
