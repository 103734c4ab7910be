"""Fuse the members' scores of one comparison into an ensemble's scores, then compute its metrics."""
from maskbench.logs import log_to
from maskbench.stages.fuse import fuse_step
from maskbench.stages.metrics import write_rule_metrics

with log_to(snakemake.log[0]):
    fuse_step(
        member_scores=dict(snakemake.params.member_scores),
        out_path=snakemake.output.scores,
        weights=snakemake.params.weights,
        reference_scores=dict(snakemake.params.reference_scores),
    )
    write_rule_metrics(snakemake.output.scores, snakemake.output.metrics, snakemake.input, snakemake.params)
