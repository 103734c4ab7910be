"""Train a projection head over a base model's cached embeddings (train part; val selects the
epoch); the training_figure rule draws its curve."""
from maskbench.logs import log_to
from maskbench.stages.train import train_head_step

with log_to(snakemake.log[0]):
    train_head_step(
        embeddings=[{v: list(p) for v, p in group.items()} for group in snakemake.params.embeddings],
        splits=list(snakemake.input.splits),
        datasets=list(snakemake.params.datasets),
        spec=dict(snakemake.params.spec),
        base_model=snakemake.params.base,
        score=snakemake.params.score,
        base_score=snakemake.params.base_score,
        seed=snakemake.params.seed,
        threads=snakemake.params.torch_threads,
        model_out=snakemake.output.model,
        curve_out=snakemake.output.curve,
        report_out=snakemake.output.report,
    )
