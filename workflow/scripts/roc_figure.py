"""Draw the ROC figure of one dataset."""
from maskbench.figures import roc_figure
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    roc_figure(snakemake.params.curves, f"ROC: {snakemake.wildcards.dataset}", snakemake.output.png)
