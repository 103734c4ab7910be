"""Write every metric of every comparison as one long table."""
from maskbench.logs import log_to
from maskbench.stages.tables import write_all_metrics

with log_to(snakemake.log[0]):
    write_all_metrics(snakemake.params.entries, snakemake.output.csv)
