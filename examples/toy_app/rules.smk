# The toy application's rules: only the cohort (its teacher is an external rankings file).
rule build_cohort:
    input:
        cases=config["toy"]["cases"],
    output:
        **cohort_files(),
        excluded=EXCLUDED,
    log:
        "logs/build_cohort/build_cohort.log",
    run:
        from examples.toy_app import build_cohort

        build_cohort(input.cases, output.cases, output.candidates, output.excluded)
