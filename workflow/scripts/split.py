"""Split one dataset's usable aligned images with one strategy."""
from maskbench.stages.split import build_split
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    copies = getattr(snakemake.input, "copies", None) or []
    copies = [copies] if isinstance(copies, str) else list(copies)
    build_split(
        index_path=snakemake.input.index,
        aligned_paths=list(snakemake.input.aligned),
        strategy=snakemake.wildcards.strategy,
        ratios=dict(snakemake.params.ratios),
        stratify=list(snakemake.params.stratify),
        age_groups=list(snakemake.params.age_groups),
        seed=snakemake.params.seed,
        table_path=snakemake.output.table,
        report_path=snakemake.output.report,
        copies_path=copies[0] if copies else None,
    )
