"""Heads (linear, MLP, ordinal) on whole-chip and upper-face embeddings, per train -> test variant."""
from maskbench.stages.attribute_heads import compare_heads
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    wc = snakemake.wildcards
    compare_heads(
        split_path=snakemake.input.split,
        index_path=snakemake.input.index,
        features={name: {v: list(p) for v, p in paths.items()} for name, paths in snakemake.params.features.items()},
        train_variants={t: list(v) for t, v in snakemake.params.train_variants.items()},
        masks=list(snakemake.params.masks),
        tasks=list(snakemake.params.tasks),
        heads=list(snakemake.params.heads),
        age_groups=list(snakemake.params.age_groups),
        seed=snakemake.params.seed,
        out_path=snakemake.output[0],
        meta={"dataset": wc.dataset, "model": wc.model, "split": wc.strategy},
    )
