"""Bar chart of EER per variant comparison and model for one dataset."""
from maskbench.logs import log_to
from maskbench.stages.figures import mask_effect

with log_to(snakemake.log[0]):
    mask_effect(snakemake.params.rows, f"{snakemake.wildcards.dataset} {snakemake.params.protocol}",
                snakemake.output.png)
