"""Embed one shard of chips (one variant) with one model."""
from maskbench.stages.embed import embed_shard
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    embed_shard(
        chips_path=snakemake.input.chips,
        model=snakemake.params.model,
        threads=snakemake.threads,
        out_path=snakemake.output[0],
        cache_dir=snakemake.params.cache_dir,
        variant=snakemake.wildcards.variant,
    )
