"""Build one verification protocol's pair manifest for one dataset."""
from maskbench.logs import log_to
from maskbench.stages.pairs import build_pairs

with log_to(snakemake.log[0]):
    split = getattr(snakemake.input, "split", None) or []
    split = [split] if isinstance(split, str) else list(split)
    copies = getattr(snakemake.input, "copies", None) or []
    copies = [copies] if isinstance(copies, str) else list(copies)
    build_pairs(
        aligned_paths=list(snakemake.input.aligned),
        protocol=snakemake.params.protocol,
        comparisons=[tuple(c) for c in snakemake.params.comparisons],
        seed=snakemake.params.seed,
        acquired_json=snakemake.input.acquired,
        table_path=snakemake.output.table,
        report_path=snakemake.output.report,
        split_path=split[0] if split else None,
        index_path=snakemake.input.index,
        copies_path=copies[0] if copies else None,
    )
