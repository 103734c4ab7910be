"""Acquire one dataset (download / local source / generated demo) into resources/raw/<dataset>/."""
from pathlib import Path

from maskbench.stages.acquire import acquire
from maskbench.errors import exit_on_user_error
from maskbench.logs import log_to

with exit_on_user_error(), log_to(snakemake.log[0]):
    acquire(
        dataset=snakemake.wildcards.dataset,
        spec=snakemake.params.dataset,
        seed=snakemake.params.seed,
        out_json=Path(snakemake.output[0]),
    )
