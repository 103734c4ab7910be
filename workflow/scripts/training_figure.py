"""Loss and validation EER per epoch of one trained model, its kept epoch marked."""
from maskbench.logs import log_to
from maskbench.stages.figures import training_figure

with log_to(snakemake.log[0]):
    training_figure(snakemake.input.curve, snakemake.input.report, snakemake.wildcards.model, snakemake.output[0])
