"""Acquire one dataset (download / local source / generated demo) into resources/raw/<dataset>/."""
from pathlib import Path

from maskbench.acquire_step import acquire
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    acquire(
        dataset=snakemake.wildcards.dataset,
        spec=snakemake.params.dataset,
        seed=snakemake.params.seed,
        out_json=Path(snakemake.output[0]),
    )
