"""Compute the verification metrics of one score file."""
from maskbench.logs import log_to
from maskbench.metrics_step import write_metrics

with log_to(snakemake.log[0]):
    baseline = snakemake.input.baseline
    write_metrics(
        snakemake.input.scores,
        snakemake.output[0],
        baseline_path=baseline[0] if baseline else None,
        evaluation=snakemake.params.evaluation,
    )
