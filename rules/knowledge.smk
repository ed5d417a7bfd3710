rule build_knowledge:
    output:
        **knowledge_files(),
    log:
        "logs/build_knowledge/build_knowledge.log",
    benchmark:
        "benchmarks/build_knowledge.tsv"
    params:
        out_dir=parent("diseases", io="output"),
        knowledge=config["knowledge"],
    conda:
        "../envs/mint.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../workflow_scripts/build_knowledge.py"
