"""Write the verification metrics per demographic group of every comparison as one long table."""
from maskbench.logs import log_to
from maskbench.stages.group_table import write_metrics_by_group

with log_to(snakemake.log[0]):
    write_metrics_by_group(snakemake.params.entries, snakemake.output.csv)
