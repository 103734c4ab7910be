"""Write every identification result (rank-k, FNIR at FPIR) as one long table."""
from maskbench.logs import log_to
from maskbench.reporting.tables import identification_rows, write_frame

with log_to(snakemake.log[0]):
    write_frame(identification_rows(snakemake.params.entries), snakemake.output.csv, "identification",
                index=False)
