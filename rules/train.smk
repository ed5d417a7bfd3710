rule train_student:
    input:
        student_base_files(),
        train_init,
        recipe=recipe,
        data=train_data,
    output:
        model=directory("results/train/{method}"),
    log:
        "logs/train_student/{method}.log",
    params:
        base=student_base(),
        init=lambda wc: train_init(wc)[0] if train_init(wc) else None,
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
