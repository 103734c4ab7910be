"""The heads comparison table: head x features x train -> test variant, one column per task."""
from maskbench.stages.attribute_heads import heads_table
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    heads_table(paths=list(snakemake.input.runs), csv_path=snakemake.output.csv)
