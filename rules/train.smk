rule train_student:
    input:
        base=student_base_files(),
        init=train_init,
        recipe=recipe,
        data=train_data,
    output:
        model=directory("results/train/{method}"),
    log:
        "logs/train_student/{method}.log",
    benchmark:
        "benchmarks/train_student/{method}.tsv"
    params:
        base=lambda wildcards, input: first_or_none(input.base) or student_base(),
        init=lambda wildcards, input: first_or_none(input.init),
        checkpoints="results/checkpoints/{method}",
    conda:
        "../envs/mint.yaml"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=720,
        gpu=1,
    wildcard_constraints:
        method="sft|dpo|orpo",
    script:
        "../workflow_scripts/train_student.py"
