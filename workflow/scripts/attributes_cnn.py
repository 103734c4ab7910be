"""Fine-tune the attribute CNN on one train variant of one split, test it on every variant."""
from maskbench.stages.attributes_cnn import run_attributes_cnn
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    wc = snakemake.wildcards
    run_attributes_cnn(
        split_path=snakemake.input.split,
        index_path=snakemake.input.index,
        aligned_paths=list(snakemake.input.aligned),
        masked_paths={m: list(p) for m, p in snakemake.params.masked.items()},
        train=wc.train,
        train_on=list(snakemake.params.train_on),
        test_on=list(snakemake.params.test_on),
        tasks=list(snakemake.params.tasks),
        age_groups=list(snakemake.params.age_groups),
        thresholds=list(snakemake.params.thresholds),
        spec=dict(snakemake.params.spec),
        seed=snakemake.params.seed,
        threads=snakemake.params.torch_threads,
        predictions_path=snakemake.output.predictions,
        metrics_path=snakemake.output.metrics,
        model_path=snakemake.output.model,
        timing_path=snakemake.output.timing,
        meta={"dataset": wc.dataset, "model": wc.model, "split": wc.strategy},
        cache_dir=snakemake.params.cache_dir,
    )
