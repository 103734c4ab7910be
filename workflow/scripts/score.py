"""Score one comparison of one protocol with one model, then compute its metrics."""
from maskbench.logs import log_to
from maskbench.stages.metrics import write_rule_metrics
from maskbench.stages.score import score_comparison

with log_to(snakemake.log[0]):
    score_comparison(
        pairs_path=snakemake.input.pairs,
        comparison=snakemake.wildcards.comparison,
        embedding_paths={v: list(p) for v, p in snakemake.params.embeddings.items()},
        score_kind=snakemake.params.score,
        out_path=snakemake.output.scores,
    )
    write_rule_metrics(snakemake.output.scores, snakemake.output.metrics, snakemake.input, snakemake.params)
