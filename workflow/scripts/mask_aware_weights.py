"""Choose a mask-aware ensemble's two weights on its val pairs."""
from pathlib import Path

from maskbench.logs import log_to
from maskbench.stages.mask_aware import select_weights_step

with log_to(snakemake.log[0]):
    scores = list(snakemake.input.scores)
    probes = list(snakemake.input.probes)
    settings = dict(snakemake.params.settings)
    select_weights_step(
        member_scores={Path(scores[i]).stem: scores[i:i + 2] for i in range(0, len(scores), 2)},  # [full, upper]
        reference_paths=list(snakemake.input.reference),
        classifier_path=snakemake.input.classifier,
        probe_embeddings={v: [p for p in probes if Path(p).parent.name == v] for v in {Path(p).parent.name for p in probes}},
        out_path=snakemake.output[0],
        step=float(settings["weight_step"]),
        tolerance=float(settings["unmasked_tolerance"]),
    )
