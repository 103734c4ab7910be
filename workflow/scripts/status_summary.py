"""Count the statuses of a stage's shards: what was processed, and what was not and why."""
from maskbench.io.atomic import write_json
from maskbench.logs import log_to
from maskbench.io.summaries import status_counts

with log_to(snakemake.log[0]):
    write_json(snakemake.output[0], status_counts(snakemake.input.shards, snakemake.params.usable))
