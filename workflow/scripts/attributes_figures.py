"""Confusion matrices, accuracy-coverage curves and age error by age group of each attribute run
of one dataset and model."""
from maskbench.stages.attributes import attribute_figures
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    for run in snakemake.params.runs:
        attribute_figures(
            run["metrics"],
            confusion_png=run["figures"]["confusion"],
            coverage_png=run["figures"]["coverage"],
            age_error_png=run["figures"]["age_error"],
        )
