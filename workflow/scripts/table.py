"""Write one configured table (rows datasets, columns models) as CSV and Markdown."""
from maskbench.logs import log_to
from maskbench.stages.tables import write_metric_table

with log_to(snakemake.log[0]):
    write_metric_table(snakemake.wildcards.table, snakemake.params.spec, list(snakemake.params.cells),
                       snakemake.params.unknown, snakemake.output.csv, snakemake.params.normalised_on)
