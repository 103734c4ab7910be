"""Compute the verification metrics of one score file."""
from maskbench.logs import log_to
from maskbench.metrics_step import write_metrics

with log_to(snakemake.log[0]):
    write_metrics(snakemake.input.scores, snakemake.output[0])
