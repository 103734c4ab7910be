"""Compute the verification metrics of one score file."""
from maskbench.logs import log_to
from maskbench.stages.metrics import write_metrics


def first(files):
    """The one file of an optional input (absent, empty, a path or a list of one)."""
    if isinstance(files, str):
        return files or None
    return files[0] if files else None


with log_to(snakemake.log[0]):
    write_metrics(
        snakemake.input.scores,
        snakemake.output[0],
        baseline_path=first(snakemake.input.baseline),
        evaluation=snakemake.params.evaluation,
        # scores of the protocol's validation protocol: the operating threshold is chosen on them
        val_scores_path=first(getattr(snakemake.input, "val_scores", None)),
        # the dataset's index, for metrics per demographic group (datasets with group_by)
        index_path=first(getattr(snakemake.input, "index", None)),
        group_by=list(getattr(snakemake.params, "group_by", None) or []),
        age_groups=getattr(snakemake.params, "age_groups", None) or None,
    )
