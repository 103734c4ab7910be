"""The ablation table (every model x probe variant) and its figure."""
from maskbench.logs import log_to
from maskbench.stages.models_table import write_models_table

with log_to(snakemake.log[0]):
    write_models_table(snakemake.params.metrics, snakemake.params.identification, dict(snakemake.params.reports),
                       snakemake.output.csv, snakemake.output.png)
