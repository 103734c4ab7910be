"""Export one scores Parquet file in Bob's 4- or 5-column text format."""
from maskbench.logs import log_to
from maskbench.stages.score_files import export_scores_step

with log_to(snakemake.log[0]):
    export_scores_step(
        snakemake.input.scores,
        list(snakemake.input.aligned),
        snakemake.output[0],
        columns=snakemake.params.columns,
    )
