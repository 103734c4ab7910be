# Input functions of the mask-aware ensembles' rules (mask_aware.smk).
from maskbench.config import mask_aware_settings, selection_protocol

MASK_AWARE_MODELS = [m for m in ENSEMBLE_MODELS if config["models"][m].get("mask_aware")]


def mask_classifier_embeddings(wildcards):
    block = config["models"][wildcards.model]["mask_aware"]
    return [
        f"results/{dataset}/embeddings/{block['base']}/{variant}/shard-{shard}.parquet"
        for dataset in block["datasets"]
        for variant in variants_for(config, dataset)
        for shard in shards(dataset)
    ]


def mask_classifier_splits(wildcards):
    return [f"results/{d}/splits/identity.parquet" for d in config["models"][wildcards.model]["mask_aware"]["datasets"]]


def mask_aware_probe_embeddings(dataset, model, variant):
    base = config["models"][model]["mask_aware"]["base"]
    return [f"results/{dataset}/embeddings/{base}/{variant}/shard-{shard}.parquet" for shard in shards(dataset)]


def mask_aware_selection_scores(wildcards):
    select = selection_protocol(config, wildcards.model, wildcards.protocol)
    return [
        f"results/{wildcards.dataset}/scores/{member}/{select}/{comparison}.parquet"
        for comparison in comparisons_for(config, wildcards.dataset, select)
        if comparison.startswith("unmasked-vs-")
        for member in config["models"][wildcards.model]["members"]
    ]


def mask_aware_selection_probes(wildcards):
    select = selection_protocol(config, wildcards.model, wildcards.protocol)
    return [
        path
        for comparison in comparisons_for(config, wildcards.dataset, select)
        if comparison.startswith("unmasked-vs-")
        for path in mask_aware_probe_embeddings(wildcards.dataset, wildcards.model, comparison.split("-vs-")[1])
    ]


def mask_aware_comparison_probes(wildcards):
    probe = wildcards.comparison.split("-vs-")[1]
    return mask_aware_probe_embeddings(wildcards.dataset, wildcards.model, probe)
