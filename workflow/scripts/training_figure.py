"""Loss and validation EER per epoch of one trained model."""
from maskbench.logs import log_to
from maskbench.training_figures import training_curve_figure

with log_to(snakemake.log[0]):
    training_curve_figure(snakemake.input.curve, f"training of {snakemake.wildcards.model}", snakemake.output[0])
