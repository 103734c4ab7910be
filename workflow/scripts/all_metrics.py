"""Write every metric of every comparison as one long table."""
from maskbench.logs import log_to
from maskbench.reporting.tables import long_metrics, write_frame

with log_to(snakemake.log[0]):
    write_frame(long_metrics(snakemake.params.entries), snakemake.output.csv, "all metrics", index=False)
