"""Fit a mask-aware ensemble's mask classifier (train identities; calibrated on val)."""
from maskbench.logs import log_to
from maskbench.stages.mask_aware import train_mask_classifier_step

with log_to(snakemake.log[0]):
    datasets = list(snakemake.params.datasets)
    train_mask_classifier_step(
        embeddings={d: dict(variants) for d, variants in snakemake.params.embeddings.items()},
        splits={d: s for d, s in zip(datasets, snakemake.input.splits)},
        c=float(snakemake.params.c),
        base_model=snakemake.params.base,
        out_path=snakemake.output[0],
        real_embeddings={d: list(files) for d, files in snakemake.params.real.items()},
    )
