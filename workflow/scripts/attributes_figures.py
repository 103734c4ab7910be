"""Confusion matrices, accuracy-coverage curves and age error by age group of one attribute run."""
from maskbench.attributes_step import attribute_figures
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    attribute_figures(
        snakemake.input.metrics,
        confusion_png=snakemake.output.confusion,
        coverage_png=snakemake.output.coverage,
        age_error_png=snakemake.output.age_error,
    )
