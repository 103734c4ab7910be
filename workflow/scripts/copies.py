"""Find a dataset's copies of one picture (identical aligned chips), once for all its protocols."""
from maskbench.logs import log_to
from maskbench.stages.copies import write_copies

with log_to(snakemake.log[0]):
    write_copies(list(snakemake.input.shards), snakemake.output[0])
