"""Choose the gallery and the probes of one identification protocol for one dataset."""
from maskbench.stages.identify import build_identification
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    split = getattr(snakemake.input, "split", None) or []
    split = [split] if isinstance(split, str) else list(split)
    build_identification(
        aligned_paths=list(snakemake.input.aligned),
        protocol=snakemake.params.protocol,
        seed=snakemake.params.seed,
        gallery_path=snakemake.output.gallery,
        probes_path=snakemake.output.probes,
        report_path=snakemake.output.report,
        split_path=split[0] if split else None,
        gallery_variant=getattr(snakemake.params, "gallery_variant", "unmasked"),
        copies_path=snakemake.input.copies,
    )
