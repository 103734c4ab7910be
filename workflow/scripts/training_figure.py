"""Loss and validation EER per epoch of one trained model, its kept epoch marked."""
import json

from maskbench.logs import log_to
from maskbench.reporting.training_figures import training_curve_figure

with log_to(snakemake.log[0]):
    with open(snakemake.input.report, encoding="utf-8") as f:
        report = json.load(f)
    training_curve_figure(snakemake.input.curve, f"training of {snakemake.wildcards.model}", snakemake.output[0],
                          kept_epoch=report["best_epoch"], unmasked_limit=report.get("unmasked_limit"))
