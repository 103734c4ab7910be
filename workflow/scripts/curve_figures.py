"""ROC, DET and score-histogram figures of one dataset."""
from maskbench.logs import log_to
from maskbench.stages.figures import curve_figures

with log_to(snakemake.log[0]):
    curve_figures(snakemake.params.curves, f"{snakemake.wildcards.dataset} {snakemake.params.protocol}",
                  snakemake.output.roc, snakemake.output.det, snakemake.output.hist)
