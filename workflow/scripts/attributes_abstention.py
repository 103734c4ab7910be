"""Abstention curves of every attribute run (heads and CNN): one table and one figure."""
from maskbench.stages.attribute_abstention import abstention_table
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    abstention_table(entries=list(snakemake.params.entries), csv_path=snakemake.output.csv,
                     figure_path=snakemake.output.figure)
