"""Build one verification protocol's pair manifest for one dataset."""
from maskbench.logs import log_to
from maskbench.stages.rule_inputs import optional_input
from maskbench.stages.pairs import build_pairs

with log_to(snakemake.log[0]):
    build_pairs(
        aligned_paths=list(snakemake.input.aligned),
        protocol=snakemake.params.protocol,
        comparisons=[tuple(c) for c in snakemake.params.comparisons],
        seed=snakemake.params.seed,
        acquired_json=snakemake.input.acquired,
        table_path=snakemake.output.table,
        report_path=snakemake.output.report,
        split_path=optional_input(snakemake.input, "split"),
        index_path=snakemake.input.index,
        copies_path=optional_input(snakemake.input, "copies"),
    )
