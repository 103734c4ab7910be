"""Score one comparison of one protocol with one model."""
from maskbench.logs import log_to
from maskbench.stages.score import score_comparison

with log_to(snakemake.log[0]):
    ref, probe = snakemake.wildcards.comparison.split("-vs-")
    paths = {v: [p for p in snakemake.input.embeddings if f"/{v}/shard-" in p] for v in {ref, probe}}
    score_comparison(
        pairs_path=snakemake.input.pairs,
        comparison=snakemake.wildcards.comparison,
        embedding_paths=paths,
        score_kind=snakemake.params.score,
        out_path=snakemake.output[0],
    )
