"""Compute the verification metrics of one score file of imported scores."""
from maskbench.logs import log_to
from maskbench.stages.metrics import write_rule_metrics

with log_to(snakemake.log[0]):
    write_rule_metrics(snakemake.input.scores, snakemake.output[0], snakemake.input, snakemake.params)
