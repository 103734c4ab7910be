"""Fine-tune a backbone on the train part of a split (masked chips mixed in), select on val."""
from maskbench.stages.finetune import finetune_step
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    finetune_step(
        aligned_paths=list(snakemake.input.aligned),
        masked_paths={m: list(p) for m, p in snakemake.params.masked.items()},
        split_path=snakemake.input.split,
        spec=dict(snakemake.params.spec),
        seed=snakemake.params.seed,
        threads=snakemake.params.torch_threads,
        model_out=snakemake.output.model,
        curve_out=snakemake.output.curve,
        report_out=snakemake.output.report,
        cache_dir=snakemake.params.get("cache_dir"),
    )
