"""Choose a mask-aware ensemble's two weights on its val pairs."""
from maskbench.logs import log_to
from maskbench.stages.mask_aware import select_weights_step

with log_to(snakemake.log[0]):
    settings = dict(snakemake.params.settings)
    select_weights_step(
        member_scores={c: list(paths) for c, paths in snakemake.params.member_scores.items()},  # [full, upper]
        reference_paths=list(snakemake.input.reference),
        classifier_path=snakemake.input.classifier,
        probe_embeddings={v: list(p) for v, p in snakemake.params.probe_embeddings.items()},
        out_path=snakemake.output[0],
        step=float(settings["weight_step"]),
        tolerance=float(settings["unmasked_tolerance"]),
    )
