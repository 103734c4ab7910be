# The realism table's inputs: which metrics it puts side by side (kept apart from the rule, as
# snakemake's linter asks).
from maskbench.config import has_real_masks, masks_for, realism_protocol


def realism_entries():
    """Metrics and scores of unmasked-vs-real and unmasked-vs-<mask> of every real-masked dataset's
    first verification protocol that compares unmasked with real, for every model it evaluates."""
    out = []
    for dataset in config["datasets"]:
        protocol = realism_protocol(config, dataset)
        if protocol is None:
            continue
        comparisons = [c for c in comparisons_for(config, dataset, protocol)
                       if c == "unmasked-vs-real" or (c.startswith("unmasked-vs-") and c[12:] in config["masks"])]
        for model in config["models"]:
            if not evaluable(config, model, dataset, protocol):
                continue
            for comparison in comparisons:
                out.append({"dataset": dataset, "model": model, "protocol": protocol, "comparison": comparison,
                            "metrics": f"results/{dataset}/metrics/{model}/{protocol}/{comparison}.json",
                            "scores": f"results/{dataset}/scores/{model}/{protocol}/{comparison}.parquet"})
    return out


def realism_targets():
    return ["results/tables/realism.csv", "results/figures/realism.png"] if realism_entries() else []



def realism_labelled_sets():
    """Datasets of the realism table whose real masks are labelled by kind (MFR2): dataset ->
    where their images are and the index options (for the breakdown by mask type)."""
    datasets = {e["dataset"] for e in realism_entries()}
    return {d: {"acquired": f"resources/raw/{d}/acquired.json",
                "images": config["datasets"][d].get("images", "images"),
                "options": config["datasets"][d].get("index_options", {})}
            for d in sorted(datasets) if config["datasets"][d]["layout"] == "mfr2"}


def contact_sheet_datasets():
    """Datasets with photos of real masks and at least one synthetic mask type."""
    return [d for d in config["datasets"] if has_real_masks(config, d) and masks_for(config, d)]


def contact_sheet_inputs(wildcards):
    masks = masks_for(config, wildcards.dataset)
    return {
        "aligned": aligned_shards(wildcards),
        "masked": [f"results/{wildcards.dataset}/masked/{m}/shard-{s}.parquet"
                   for m in masks for s in shards(wildcards.dataset)],
    }


def contact_sheet_targets():
    return [f"results/figures/contact_sheet_{d}.png" for d in contact_sheet_datasets()]
