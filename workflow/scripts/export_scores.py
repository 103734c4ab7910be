"""Export one scores Parquet file in Bob's 4- or 5-column text format."""
from maskbench.logs import log_to
from maskbench.io.score_files import export_score_file

with log_to(snakemake.log[0]):
    export_score_file(
        snakemake.input.scores,
        list(snakemake.input.aligned),
        snakemake.output[0],
        columns=snakemake.params.columns,
    )
