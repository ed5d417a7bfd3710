rule make_report:
    input:
        scores=score_files(),
        train=train_dirs(),
        teacher=[] if external_rankings() else rules.train_teacher.output.metrics,
        **cohort_files(),
        excluded=excluded_file(),
    output:
        summary=report("results/report/summary.md", caption="../report/summary.rst", category="Comparison"),
        table="results/report/metrics.csv",
        accuracy=report("results/report/accuracy.png", caption="../report/accuracy.rst", category="Comparison"),
        training=report("results/report/training.png", caption="../report/training.rst", category="Training"),
        per_disease=report(
            "results/report/per_disease.png", caption="../report/per_disease.rst", category="Comparison"
        ),
    log:
        "logs/make_report/make_report.log",
    params:
        out_dir=parent("summary", io="output"),
        cohort_dir=parent("cases"),
        evaluation=config["evaluation"],
    conda:
        "../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../workflow_scripts/make_report.py"
