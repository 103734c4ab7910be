"""Write the verification metrics per demographic group of every comparison as one long table."""
from maskbench.evaluation.group_metrics import by_group_table
from maskbench.logs import log_to
from maskbench.reporting.tables import write_frame

with log_to(snakemake.log[0]):
    write_frame(by_group_table(snakemake.params.entries), snakemake.output.csv, "metrics by group", index=False)
