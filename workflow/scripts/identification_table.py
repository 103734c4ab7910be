"""Write every identification result (rank-k, FNIR at FPIR) as one long table."""
from maskbench.logs import log_to
from maskbench.stages.tables import write_identification_table

with log_to(snakemake.log[0]):
    write_identification_table(snakemake.params.entries, snakemake.output.csv)
