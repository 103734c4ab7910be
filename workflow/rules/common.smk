# Config validation, wildcard constraints and the input functions every stage shares.
from pathlib import Path

from snakemake.utils import validate

from maskbench.config import check_config, comparison_pairs, comparisons_for, masks_for, variants_for

validate(config, schema="../schemas/config.schema.yaml")
check_config(config)

SEED = config["seed"]
LIB = "src/maskbench/"


wildcard_constraints:
    dataset=r"[a-z0-9][a-z0-9_]*",
    mask=r"[a-z0-9][a-z0-9_]*",
    model=r"[a-z0-9][a-z0-9_]*",
    protocol=r"[a-z0-9][a-z0-9_]*",
    variant=r"[a-z0-9][a-z0-9_]*",
    comparison=r"[a-z0-9_]+-vs-[a-z0-9_]+",
    table=r"[a-z0-9][a-z0-9_]*",
    shard=r"\d+",


def lib(*modules):
    """Library files a rule runs, declared as inputs so editing one re-runs only its stages."""
    return [f"{LIB}{m}.py" for m in modules]


def shards(dataset):
    return range(config["datasets"][dataset]["shards"])


def dataset_cfg(wildcards):
    return config["datasets"][wildcards.dataset]


def aligned_shards(wildcards):
    return expand(
        "results/{dataset}/aligned/shard-{shard}.parquet",
        dataset=wildcards.dataset,
        shard=shards(wildcards.dataset),
    )


def variant_chips(wildcards):
    """The chips an embedding job reads: the aligned shard or one mask type's shard."""
    if wildcards.variant == "unmasked":
        return f"results/{wildcards.dataset}/aligned/shard-{wildcards.shard}.parquet"
    return f"results/{wildcards.dataset}/masked/{wildcards.variant}/shard-{wildcards.shard}.parquet"


def comparison_embeddings(wildcards):
    ref, probe = wildcards.comparison.split("-vs-")
    return expand(
        "results/{dataset}/embeddings/{model}/{variant}/shard-{shard}.parquet",
        dataset=wildcards.dataset,
        model=wildcards.model,
        variant=sorted({ref, probe}),
        shard=shards(wildcards.dataset),
    )


def metric_files(dataset):
    ds = config["datasets"][dataset]
    return [
        f"results/{dataset}/metrics/{model}/{protocol}/{comparison}.json"
        for protocol in ds["protocols"]
        for comparison in comparisons_for(config, dataset, protocol)
        for model in config["models"]
    ]


def all_metric_files():
    return [f for dataset in config["datasets"] for f in metric_files(dataset)]


def all_targets():
    # a dataset without identities (UTKFace) has no verification protocol, hence no metrics
    verified = [d for d, ds in config["datasets"].items() if ds["protocols"]]
    if not verified:
        return expand("results/tables/{table}.csv", table=config["tables"])
    return (
        expand("results/tables/{table}.csv", table=config["tables"])
        + ["results/tables/all_metrics.csv", "results/tables/coverage.csv"]
        + expand(
            "results/figures/{figure}_{dataset}.png",
            figure=["roc", "det", "scores", "mask_effect"],
            dataset=verified,
        )
    )


def nist_baseline(wildcards):
    """Unmasked-vs-unmasked scores of the same protocol, for masked-probe comparisons."""
    ref, probe = wildcards.comparison.split("-vs-")
    if ref != "unmasked" or probe == "unmasked":
        return []
    if "unmasked-vs-unmasked" not in comparisons_for(config, wildcards.dataset, wildcards.protocol):
        return []
    return [f"results/{wildcards.dataset}/scores/{wildcards.model}/{wildcards.protocol}/unmasked-vs-unmasked.parquet"]


def table_cells(wildcards):
    """(dataset, model) -> metrics file of the comparison a table reports."""
    spec = config["tables"][wildcards.table]
    datasets = spec.get("datasets") or list(config["datasets"])
    models = spec.get("models") or list(config["models"])
    comparison = f"{spec['ref_variant']}-vs-{spec['probe_variant']}"
    cells = {}
    for dataset in datasets:
        protocol = (spec.get("protocol") or {}).get(dataset, config["datasets"][dataset]["protocols"][0])
        for model in models:
            cells[f"{dataset}/{model}"] = f"results/{dataset}/metrics/{model}/{protocol}/{comparison}.json"
    return cells


def metric_entries():
    return [
        {"dataset": d, "model": m, "protocol": p, "comparison": c,
         "path": f"results/{d}/metrics/{m}/{p}/{c}.json"}
        for d in config["datasets"]
        for p in config["datasets"][d]["protocols"]
        for c in comparisons_for(config, d, p)
        for m in config["models"]
    ]


def roc_curves(wildcards):
    protocol = config["datasets"][wildcards.dataset]["protocols"][0]
    return [
        {"label": f"{model}: {comparison.replace('-vs-', ' vs ')}",
         "path": f"results/{wildcards.dataset}/scores/{model}/{protocol}/{comparison}.parquet"}
        for comparison in comparisons_for(config, wildcards.dataset, protocol)
        for model in config["models"]
    ]


def mask_effect_rows(wildcards):
    protocol = config["datasets"][wildcards.dataset]["protocols"][0]
    return [
        {"model": m, "comparison": c, "path": f"results/{wildcards.dataset}/metrics/{m}/{protocol}/{c}.json"}
        for c in comparisons_for(config, wildcards.dataset, protocol)
        for m in config["models"]
    ]
