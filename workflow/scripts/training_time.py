"""Wall time of each training job, from Snakemake's benchmark files (measured: not byte-stable)."""
from maskbench.logs import log_to
from maskbench.stages.models_table import write_training_time

with log_to(snakemake.log[0]):
    write_training_time(dict(snakemake.params.benchmarks), snakemake.output.csv)
