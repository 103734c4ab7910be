"""Compute the verification metrics of one score file of imported scores."""
from maskbench.logs import log_to
from maskbench.stages.metrics import write_comparison_metrics

with log_to(snakemake.log[0]):
    write_comparison_metrics(
        snakemake.input.scores,
        snakemake.output[0],
        baseline=list(snakemake.input.baseline),
        val_scores=list(snakemake.input.val_scores),
        index=list(snakemake.input.index),
        evaluation=snakemake.params.evaluation,
        group_by=snakemake.params.group_by,
        age_groups=snakemake.params.age_groups,
    )
