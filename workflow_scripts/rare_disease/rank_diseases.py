from mint.apps.rare_disease.teacher import rank_diseases
from mint.core.workflow import run_step

p = snakemake.params
with run_step(snakemake):
    knowledge = None
    if p.knowledge:
        knowledge = {"annotations": snakemake.input.annotations, "terms": snakemake.input.terms,
                     "fusion": snakemake.output.fusion, "synthetic_sources": p.synthetic_sources, "seed": p.seed}
    rank_diseases(snakemake.input.cases, snakemake.input.candidates, snakemake.input.embeddings,
                  snakemake.input.model, snakemake.output.rankings, image_size=p.image_size, threads=p.threads,
                  knowledge=knowledge)
