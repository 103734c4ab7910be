"""The attribute tables: headline metrics (wide) and metrics by sex and race group (long)."""
from maskbench.stages.attributes import attributes_tables
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    attributes_tables(
        entries=list(snakemake.params.entries),
        splits=list(snakemake.params.splits),
        csv_path=snakemake.output.csv,
        by_group_path=snakemake.output.by_group,
    )
