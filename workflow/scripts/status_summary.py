"""Count the statuses of a stage's shards: what was processed, and what was not and why."""
from maskbench.logs import log_to
from maskbench.stages.summaries import write_status_summary

with log_to(snakemake.log[0]):
    write_status_summary(list(snakemake.input.shards), list(snakemake.params.usable), snakemake.output[0])
