rule make_report:
    input:
        **cohort_files(),
        scores=score_files(),
        train=train_dirs(),
        teacher=teacher_metrics(),
        excluded=EXCLUDED,
        rankings=TEACHER_RANKINGS,
    output:
        summary=report("results/report/summary.md", caption="../../report/summary.rst", category="Comparison"),
        table="results/report/metrics.csv",
        timings="results/report/timings.csv",
        accuracy=report("results/report/accuracy.png", caption="../../report/accuracy.rst", category="Comparison"),
        training=report("results/report/training.png", caption="../../report/training.rst", category="Training"),
        per_label=report("results/report/per_label.png", caption="../../report/per_label.rst", category="Comparison"),
        agreement="results/report/agreement.csv",
        confusion=report("results/report/confusion.png", caption="../../report/confusion.rst", category="Comparison"),
    log:
        "logs/make_report/make_report.log",
    params:
        **STEP.params(
            application=cfg("application"),
            k=cfg("preferences.k"),
            q=cfg("preferences.q"),
            modality=pair_modality(),
            teacher_description=TEACHER_CHOICE.description,
            ks=cfg("evaluation.ks"),
            bootstrap=cfg("evaluation.bootstrap"),
            seed=cfg("seed"),
            split=cfg("evaluation.split"),
        ),
    conda:
        "../../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../../workflow_scripts/make_report.py"
