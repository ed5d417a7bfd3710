rule predict_student:
    input:
        cases=CASES,
        model=predict_model_files,
        accelerate=config["training"]["accelerate"],
    output:
        predictions="results/predict/{run}.parquet",
    log:
        "logs/predict_student/{run}.log",
    benchmark:
        "benchmarks/predict_student/{run}.tsv"
    params:
        **STEP.params(
            model=predict_model,
            method=run_method,
            prompt=prompt(),
            text_field=f"--text-field {APP.student_text}" if APP.student_text else "",
            image_field=f"--image-field {APP.student_image}" if APP.student_image else "",
            kind=APP.student_kind,
            k=cfg("preferences.k"),
            batch_size=cfg("evaluation.batch_size"),
            max_new_tokens=cfg("evaluation.max_new_tokens"),
            eval_threads=cfg("evaluation.threads"),
            seed=cfg("seed"),
            split=cfg("evaluation.split"),
            accelerate=ACCELERATE,
        ),
        step=shell_step("predict_student"),
    conda:
        "../../envs/mint.yaml"
    threads: config["evaluation"]["threads"]
    resources:
        mem_mb=16000,
        runtime=120,
        gpu=1,
    wildcard_constraints:
        run=PREDICT_RUN,
    shell:
        # The cases of evaluation.split are shared out over one process per GPU (CPU: one process); see mint/core/launch.py.
        "PROCESSES=$(python -m mint.core.launch {resources.gpu}); "
        "MINT_STEP={params.step:q} MINT_STEP_SETTINGS={params.settings:q} "
        "accelerate launch --config_file {input.accelerate:q} $PROCESSES -m mint.core.predict "
        "{params.model:q} {input.cases:q} {output.predictions:q} --prompt {params.prompt:q} {params.text_field} {params.image_field} "
        "--kind {params.kind} --k {params.k} --batch-size {params.batch_size} --max-new-tokens {params.max_new_tokens} "
        "--threads {params.eval_threads} --seed {params.seed} --method {params.method} --split {params.split} --log {log:q}"


rule score_student:
    input:
        **cohort_files(),
        vocabulary=vocabulary_file(),
        predictions="results/predict/{run}.parquet",
    output:
        scores="results/scores/{run}.parquet",
    log:
        "logs/score_student/{run}.log",
    params:
        **STEP.params(
            application=cfg("application"),
            k=cfg("preferences.k"),
            header=APP.prompt.header,
            fuzzy_cutoff=cfg("evaluation.fuzzy_cutoff"),
            seed=run_seed,
            split=cfg("evaluation.split"),
        ),
    conda:
        "../../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    wildcard_constraints:
        run=SCORE_RUN,
    script:
        "../../workflow_scripts/score_student.py"


rule score_teacher:
    input:
        cases=CASES,
        rankings=TEACHER_RANKINGS,
    output:
        scores="results/scores/teacher_{modality}.parquet",
    log:
        "logs/score_teacher/{modality}.log",
    params:
        **STEP.params(
            modality=lambda wildcards: wildcards.modality,
            method=lambda wildcards: f"teacher_{wildcards.modality}",
            k=max_k(),
            split=cfg("evaluation.split"),
        ),
    conda:
        "../../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    wildcard_constraints:
        modality="|".join(modalities()),
    script:
        "../../workflow_scripts/score_ranking.py"


if APP.rankers:

    rule score_ranker:
        input:
            cases=CASES,
            rankings="results/rankings/{ranker}.parquet",
        output:
            scores="results/scores/{ranker}.parquet",
        log:
            "logs/score_ranker/{ranker}.log",
        params:
            **STEP.params(
                modality=lambda wildcards: wildcards.ranker,
                method=lambda wildcards: wildcards.ranker,
                k=max_k(),
                split=cfg("evaluation.split"),
            ),
        conda:
            "../../envs/mint.yaml"
        resources:
            mem_mb=4000,
            runtime=10,
        wildcard_constraints:
            ranker="|".join(APP.rankers),
        script:
            "../../workflow_scripts/score_ranking.py"


rule rank_student:
    input:
        **cohort_files(),
        model=predict_model_files,
    output:
        rankings="results/panel/{run}.parquet",
    log:
        "logs/rank_student/{run}.log",
    benchmark:
        "benchmarks/rank_student/{run}.tsv"
    params:
        **panel_ranking_params(
            split=cfg("evaluation.split"),
            top=max_k() if config["evaluation"]["panel_labels"] == "top" else None,
            model=predict_model,
        ),
    conda:
        "../../envs/mint.yaml"
    threads: config["evaluation"]["threads"]
    resources:
        mem_mb=16000,
        runtime=120,
        gpu=1,
    wildcard_constraints:
        run=PREDICT_RUN,
    script:
        "../../workflow_scripts/rank_student.py"


rule score_student_panel:
    input:
        cases=CASES,
        rankings="results/panel/{run}.parquet",
    output:
        scores="results/scores/panel/{run}.parquet",
    log:
        "logs/score_student_panel/{run}.log",
    params:
        **STEP.params(
            method=lambda wildcards: f"{run_method(wildcards)}{PANEL_SUFFIX}",
            k=max_k(),
            seed=run_seed,
            split=cfg("evaluation.split"),
        ),
    conda:
        "../../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    wildcard_constraints:
        run=PREDICT_RUN,
    script:
        "../../workflow_scripts/score_student_panel.py"
