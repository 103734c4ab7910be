"""The coverage table: per dataset, how many images were aligned and masked by each mask type."""
from maskbench.logs import log_to
from maskbench.stages.tables import write_coverage

with log_to(snakemake.log[0]):
    write_coverage(snakemake.params.summaries, snakemake.output.csv)
