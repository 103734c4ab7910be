"""Score one comparison of one protocol with one model, then compute its metrics."""
from maskbench.logs import log_to
from maskbench.stages.metrics import write_metrics
from maskbench.stages.score import score_comparison


def first(files):
    """The one file of an optional input (empty or a list of one)."""
    return files[0] if files else None


with log_to(snakemake.log[0]):
    score_comparison(
        pairs_path=snakemake.input.pairs,
        comparison=snakemake.wildcards.comparison,
        embedding_paths={v: list(p) for v, p in snakemake.params.embeddings.items()},
        score_kind=snakemake.params.score,
        out_path=snakemake.output.scores,
    )
    write_metrics(
        snakemake.output.scores,
        snakemake.output.metrics,
        baseline_path=first(snakemake.input.baseline),
        evaluation=snakemake.params.evaluation,
        # scores of the protocol's validation protocol: the operating threshold is chosen on them
        val_scores_path=first(snakemake.input.val_scores),
        # the dataset's index, for metrics per demographic group (datasets with group_by)
        index_path=first(snakemake.input.index),
        group_by=list(snakemake.params.group_by or []),
        age_groups=snakemake.params.age_groups or None,
    )
