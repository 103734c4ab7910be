"""The realism table (CSV, Markdown) and figure: real masks beside synthetic ones; and unmasked ->
real per kind of real mask where the set labels them (MFR2)."""
from maskbench.logs import log_to
from maskbench.stages.realism import write_realism

with log_to(snakemake.log[0]):
    write_realism(snakemake.params.entries, snakemake.params.labelled, snakemake.params.evaluation,
                  snakemake.output.csv, snakemake.output.png, snakemake.output.by_type)
