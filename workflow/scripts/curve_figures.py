"""ROC, DET and score-histogram figures of one dataset."""
from maskbench.logs import log_to
from maskbench.stages.figures import curve_figures

with log_to(snakemake.log[0]):
    curve_figures(snakemake.params.curves, snakemake.wildcards.dataset, snakemake.output.roc, snakemake.output.det,
                  snakemake.output.hist)
