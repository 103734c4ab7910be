"""Fuse the members' scores of one comparison into an ensemble's scores, then compute its metrics."""
from maskbench.logs import log_to
from maskbench.stages.fuse import fuse_step
from maskbench.stages.metrics import write_comparison_metrics

with log_to(snakemake.log[0]):
    fuse_step(
        member_scores=dict(snakemake.params.member_scores),
        out_path=snakemake.output.scores,
        weights=snakemake.params.weights,
        reference_scores=dict(snakemake.params.reference_scores),
    )
    write_comparison_metrics(
        snakemake.output.scores,
        snakemake.output.metrics,
        baseline=list(snakemake.input.baseline),
        val_scores=list(snakemake.input.val_scores),
        index=list(snakemake.input.index),
        evaluation=snakemake.params.evaluation,
        group_by=snakemake.params.group_by,
        age_groups=snakemake.params.age_groups,
    )
