# An external model's rankings in place of the application's teacher (config teacher.rankings).
if external_rankings():

    rule import_rankings:
        input:
            **cohort_files(),
            external=config["teacher"]["rankings"],
        output:
            rankings=TEACHER_RANKINGS,
        log:
            "logs/import_rankings/import_rankings.log",
        params:
            **STEP.params(
                external=file_setting("teacher.rankings", config["teacher"]["rankings"]),
            ),
        conda:
            "../../envs/mint.yaml"
        resources:
            mem_mb=4000,
            runtime=10,
        script:
            "../../workflow_scripts/import_rankings.py"
