"""Search one probe variant of an identification protocol against its gallery with one model."""
from maskbench.stages.identify import identify_step
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    gallery = getattr(snakemake.params, "gallery_variant", "unmasked")
    variant = getattr(snakemake.params, "probe_variant", None) or snakemake.wildcards.probe_variant
    identify_step(
        gallery_path=snakemake.input.gallery,
        probes_path=snakemake.input.probes,
        embedding_paths={v: list(p) for v, p in snakemake.params.embeddings.items()},
        score_kind=snakemake.params.score,
        out_json=snakemake.output[0],
        ranks=list(snakemake.params.ranks),
        fpir_targets=list(snakemake.params.fpir_targets),
        probe_variant=variant,
        gallery_variant=gallery,
    )
