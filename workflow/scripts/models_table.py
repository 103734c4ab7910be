"""The ablation table (every model x probe variant) and its figure."""
from maskbench.logs import log_to
from maskbench.reporting.model_table import model_figure, model_table
from maskbench.reporting.tables import write_frame

with log_to(snakemake.log[0]):
    frame = model_table(snakemake.params.metrics, snakemake.params.identification, dict(snakemake.params.reports))
    write_frame(frame, snakemake.output.csv, "models", index=False)
    model_figure(frame, snakemake.output.png)
