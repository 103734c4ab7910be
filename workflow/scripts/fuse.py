"""Fuse the members' scores of one comparison into an ensemble's scores."""
from maskbench.evaluation.fusion import fuse_score_files
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    fuse_score_files(
        paths=list(snakemake.input.members),
        members=list(snakemake.params.members),
        out_path=snakemake.output[0],
        weights=snakemake.params.weights,
        reference_paths=list(snakemake.input.reference),
    )
