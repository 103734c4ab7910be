"""Score one comparison of one protocol with one model, then compute its metrics."""
from maskbench.logs import log_to
from maskbench.stages.metrics import write_comparison_metrics
from maskbench.stages.score import score_comparison

with log_to(snakemake.log[0]):
    score_comparison(
        pairs_path=snakemake.input.pairs,
        comparison=snakemake.wildcards.comparison,
        embedding_paths={v: list(p) for v, p in snakemake.params.embeddings.items()},
        score_kind=snakemake.params.score,
        out_path=snakemake.output.scores,
    )
    write_comparison_metrics(
        snakemake.output.scores,
        snakemake.output.metrics,
        baseline=list(snakemake.input.baseline),
        val_scores=list(snakemake.input.val_scores),
        index=list(snakemake.input.index),
        evaluation=snakemake.params.evaluation,
        group_by=snakemake.params.group_by,
        age_groups=snakemake.params.age_groups,
    )
