"""Choose the gallery and the probes of one identification protocol for one dataset."""
from maskbench.stages.identify import build_identification
from maskbench.logs import log_to
from maskbench.stages.rule_inputs import optional_input

with log_to(snakemake.log[0]):
    build_identification(
        aligned_paths=list(snakemake.input.aligned),
        protocol=snakemake.params.protocol,
        seed=snakemake.params.seed,
        gallery_path=snakemake.output.gallery,
        probes_path=snakemake.output.probes,
        report_path=snakemake.output.report,
        split_path=optional_input(snakemake.input, "split"),
        gallery_variant=getattr(snakemake.params, "gallery_variant", "unmasked"),
        copies_path=snakemake.input.copies,
    )
