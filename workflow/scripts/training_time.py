"""Wall time of each training job, from Snakemake's benchmark files (measured: not byte-stable)."""
from maskbench.logs import log_to
from maskbench.reporting.model_table import training_time_table
from maskbench.reporting.tables import write_frame

with log_to(snakemake.log[0]):
    write_frame(training_time_table(dict(snakemake.params.benchmarks)), snakemake.output.csv,
                "training wall time (s)", index=False)
