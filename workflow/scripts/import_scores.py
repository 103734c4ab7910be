"""Import a score file made elsewhere (Bob's 4/5 columns or CSV) as a scores Parquet file."""
from maskbench.logs import log_to
from maskbench.stages.score_files import import_scores_step

with log_to(snakemake.log[0]):
    pairs = snakemake.input.pairs
    import_scores_step(
        snakemake.input.scores,
        snakemake.params.format,
        snakemake.output[0],
        pairs_path=(pairs if isinstance(pairs, str) else pairs[0]) if pairs else None,
        comparison=snakemake.wildcards.comparison,
    )
