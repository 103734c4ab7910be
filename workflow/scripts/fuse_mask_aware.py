"""Fuse a mask-aware ensemble's two members' scores of one comparison with its chosen weights,
then compute the comparison's metrics."""
from maskbench.logs import log_to
from maskbench.stages.mask_aware import fuse_mask_aware_step
from maskbench.stages.metrics import write_rule_metrics

with log_to(snakemake.log[0]):
    fuse_mask_aware_step(
        member_paths=list(snakemake.input.members),
        members=list(snakemake.params.members),
        reference_paths=list(snakemake.input.reference),
        weights_path=snakemake.input.weights,
        classifier_path=snakemake.input.classifier,
        probe_embedding_paths=list(snakemake.input.probes),
        out_path=snakemake.output.scores,
    )
    write_rule_metrics(snakemake.output.scores, snakemake.output.metrics, snakemake.input, snakemake.params)
