rule train_student:
    input:
        base=student_base_files(),
        init=train_init,
        recipe=recipe,
        data=train_data,
        accelerate=config["training"]["accelerate"],
    output:
        model=directory("results/train/seed{seed}/{method}"),
    log:
        "logs/train_student/seed{seed}/{method}.log",
    benchmark:
        "benchmarks/train_student/seed{seed}/{method}.tsv"
    params:
        **STEP.params(
            base=student_model(),
            recipe=lambda wildcards: RECIPES[wildcards.method],
            accelerate=ACCELERATE,
            checkpoints=lambda wildcards: f"results/checkpoints/seed{wildcards.seed}/{wildcards.method}",
            kind=APP.student_kind,
        ),
        init=init_option,  # from the input `init`, which Snakemake tracks
        step=shell_step("train_student"),
    conda:
        "../../envs/mint.yaml"
    threads: 1
    # On the way to the students' training (as the teacher's ranking and build_preferences): before
    # any ready evaluation step. Without it the scheduler fills the cores with those (minutes each), and
    # a 2-thread step such as the teacher's ranking waits for their end. Not negative on the evaluation
    # steps instead: Snakemake's ILP scheduler would then never pick them.
    priority: 1
    resources:
        mem_mb=16000,
        runtime=720,
        gpu=1,
    wildcard_constraints:
        method="|".join(METHODS),
        seed=r"\d+",
    shell:
        # One process per GPU the job got (CPU: one process); see mint/core/launch.py.
        "PROCESSES=$(python -m mint.core.launch {resources.gpu}); "
        "MINT_STEP={params.step:q} MINT_STEP_SETTINGS={params.settings:q} "
        "accelerate launch --config_file {input.accelerate:q} $PROCESSES -m mint.core.train "
        "{input.recipe:q} {params.base:q} {input.data:q} {output.model:q} {params.init} "
        "--checkpoints {params.checkpoints:q} --seed {wildcards.seed} --threads {threads} --kind {params.kind} "
        "--log {log:q}"
