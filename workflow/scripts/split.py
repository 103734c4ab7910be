"""Split one dataset's usable aligned images with one strategy."""
from maskbench.stages.split import build_split
from maskbench.logs import log_to
from maskbench.stages.rule_inputs import optional_input

with log_to(snakemake.log[0]):
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
        copies_path=optional_input(snakemake.input, "copies"),
    )
