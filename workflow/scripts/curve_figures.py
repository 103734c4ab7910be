"""ROC, DET and score-histogram figures of one dataset."""
from maskbench.reporting.figures import det_figure, roc_figure, score_histograms
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    curves = snakemake.params.curves
    dataset = snakemake.wildcards.dataset
    roc_figure(curves, f"ROC: {dataset}", snakemake.output.roc)
    det_figure(curves, f"DET: {dataset}", snakemake.output.det)
    score_histograms(curves, f"Genuine and impostor scores: {dataset}", snakemake.output.hist)
