# Mask-aware ensembles (`mask_aware:`): a mask classifier on a base model's embeddings (train
# identities; calibrated on val), two fusion weights chosen on val pairs, then the fused scores.
from maskbench.mask_fusion import selection_protocol
from maskbench.mask_fusion import settings as mask_aware_settings

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


rule train_mask_classifier:
    conda:
        "../../envs/embed.yaml"
    wildcard_constraints:
        model=one_of(MASK_AWARE_MODELS),
    input:
        embeddings=mask_classifier_embeddings,
        splits=mask_classifier_splits,
        code=lib("mask_fusion", "mask_classifier", "embed_step"),
    output:
        "results/models/{model}/mask_classifier.json",
    params:
        datasets=lambda wc: list(config["models"][wc.model]["mask_aware"]["datasets"]),
        base=lambda wc: config["models"][wc.model]["mask_aware"]["base"],
        c=lambda wc: mask_aware_settings(config["models"][wc.model])["C"],
    log:
        "results/logs/train/{model}_mask_classifier.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 20 * attempt,
    script:
        "../scripts/train_mask_classifier.py"


rule mask_aware_weights:
    conda:
        "../../envs/evaluate.yaml"
    wildcard_constraints:
        model=one_of(MASK_AWARE_MODELS),
    input:
        scores=mask_aware_selection_scores,
        reference=ensemble_reference_scores,
        classifier="results/models/{model}/mask_classifier.json",
        probes=mask_aware_selection_probes,
        code=lib("mask_fusion", "mask_classifier", "fusion", "metrics"),
    output:
        "results/{dataset}/fusion/{model}/{protocol}.json",
    params:
        settings=lambda wc: mask_aware_settings(config["models"][wc.model]),
    log:
        "results/logs/fuse/{dataset}/{model}/{protocol}/weights.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=lambda wc, attempt: 60 * attempt,
    script:
        "../scripts/mask_aware_weights.py"


ruleorder: fuse_mask_aware > fuse


rule fuse_mask_aware:
    conda:
        "../../envs/evaluate.yaml"
    wildcard_constraints:
        model=one_of(MASK_AWARE_MODELS),
    input:
        members=ensemble_member_scores,
        reference=ensemble_reference_scores,
        weights="results/{dataset}/fusion/{model}/{protocol}.json",
        classifier="results/models/{model}/mask_classifier.json",
        probes=mask_aware_comparison_probes,
        code=lib("mask_fusion", "mask_classifier", "fusion"),
    output:
        "results/{dataset}/scores/{model}/{protocol}/{comparison}.parquet",
    params:
        members=lambda wc: config["models"][wc.model]["members"],
    log:
        "results/logs/fuse/{dataset}/{model}/{protocol}/{comparison}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 20 * attempt,
    script:
        "../scripts/fuse_mask_aware.py"
