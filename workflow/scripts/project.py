"""Project one embedding shard of the base model through a trained head."""
from maskbench.logs import log_to
from maskbench.stages.train import project_shard

with log_to(snakemake.log[0]):
    project_shard(
        base_shard=snakemake.input.base,
        head_path=snakemake.input.head,
        out_path=snakemake.output[0],
        threads=snakemake.threads,
    )
