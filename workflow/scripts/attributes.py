"""Train attribute heads on one train variant of one split, test them on every variant."""
from maskbench.stages.attributes import run_attributes
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    wc = snakemake.wildcards
    run_attributes(
        split_path=snakemake.input.split,
        index_path=snakemake.input.index,
        embedding_paths={v: list(p) for v, p in snakemake.params.embeddings.items()},
        train=wc.train,
        train_on=list(snakemake.params.train_on),
        test_on=list(snakemake.params.test_on),
        tasks=list(snakemake.params.tasks),
        heads=list(snakemake.params.heads),
        age_groups=list(snakemake.params.age_groups),
        thresholds=list(snakemake.params.thresholds),
        seed=snakemake.params.seed,
        predictions_path=snakemake.output.predictions,
        metrics_path=snakemake.output.metrics,
        meta={"dataset": wc.dataset, "model": wc.model, "split": wc.strategy},
    )
