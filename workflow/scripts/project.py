"""Project the base model's embeddings of one variant through a trained head."""
from maskbench.logs import log_to
from maskbench.stages.train import project_embeddings

with log_to(snakemake.log[0]):
    project_embeddings(
        base_path=snakemake.input.base,
        head_path=snakemake.input.head,
        out_path=snakemake.output[0],
        threads=snakemake.threads,
    )
