"""Fuse the members' scores of one comparison into an ensemble's scores."""
from maskbench.logs import log_to
from maskbench.stages.fuse import fuse_step

with log_to(snakemake.log[0]):
    fuse_step(
        member_scores=dict(snakemake.params.member_scores),
        out_path=snakemake.output[0],
        weights=snakemake.params.weights,
        reference_scores=dict(snakemake.params.reference_scores),
    )
