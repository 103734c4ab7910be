"""Embed one variant's chips (every shard) with one model."""
from maskbench.stages.embed import embed_chips
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    embed_chips(
        chips_paths=list(snakemake.input.chips),
        model=snakemake.params.model,
        threads=snakemake.threads,
        out_path=snakemake.output[0],
        cache_dir=snakemake.params.cache_dir,
        variant=snakemake.wildcards.variant,
    )
