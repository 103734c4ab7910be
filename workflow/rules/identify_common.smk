# Identification: which datasets and protocols search a gallery, and the input functions of
# identify.smk (kept apart from the rules, as snakemake's linter asks).
from maskbench.config import (
    DEFAULT_FPIR_TARGETS,
    DEFAULT_RANKS,
    identification_probe_variants,
    identification_protocols,
    real_gallery_wanted,
)

# dataset -> its identification protocols (datasets without one get no identification job)
IDENTIFICATION = {d: identification_protocols(config, d) for d in config["datasets"]}
IDENTIFICATION = {d: ps for d, ps in IDENTIFICATION.items() if ps}
IDENTIFICATION_PROTOCOLS = sorted({p for ps in IDENTIFICATION.values() for p in ps})
IDENTIFICATION_DIR = "results/{dataset}/identification/{protocol}"
IDENTIFY_RESULT = "results/{dataset}/identification/{model}/{protocol}/{probe_variant}.json"
# [real, real]: a gallery enrolled from the real-masked photos, its manifests and results apart
REAL_GALLERY_DIR = "results/{dataset}/identification/{protocol}/real-vs-real"
IDENTIFY_REAL_RESULT = "results/{dataset}/identification/{model}/{protocol}/real-vs-real.json"


def identification_setting(wildcards, key, default):
    return list(config["protocols"][wildcards.protocol].get(key) or default)


def identification_embeddings(wildcards):
    """Unmasked embeddings (the gallery) and the probe variant's, of every shard."""
    if wildcards.probe_variant not in identification_probe_variants(config, wildcards.dataset, wildcards.protocol):
        raise ValueError(
            f"{wildcards.probe_variant!r} is not a probe variant of protocol {wildcards.protocol!r} "
            f"on {wildcards.dataset!r}"
        )
    return expand(
        "results/{dataset}/embeddings/{model}/{variant}/shard-{shard}.parquet",
        dataset=wildcards.dataset,
        model=wildcards.model,
        variant=sorted({"unmasked", wildcards.probe_variant}),
        shard=shards(wildcards.dataset),
    )


def real_gallery_embeddings(wildcards):
    """The real-masked embeddings of every shard, for a protocol that asks for [real, real]."""
    if not real_gallery_wanted(config, wildcards.dataset, wildcards.protocol):
        raise ValueError(f"protocol {wildcards.protocol!r} on {wildcards.dataset!r} has no [real, real] comparison")
    return expand(
        "results/{dataset}/embeddings/{model}/real/shard-{shard}.parquet",
        dataset=wildcards.dataset,
        model=wildcards.model,
        shard=shards(wildcards.dataset),
    )


def identification_entries():
    """One result per dataset, identification protocol, model with embeddings and probe variant."""
    return [
        {"dataset": d, "model": m, "protocol": p,
         "path": IDENTIFY_RESULT.format(dataset=d, model=m, protocol=p, probe_variant=v)}
        for d, protocols in IDENTIFICATION.items()
        for p in protocols
        for m in SCORED_MODELS
        if evaluable(config, m, d, p)
        for v in identification_probe_variants(config, d, p)
    ] + [
        {"dataset": d, "model": m, "protocol": p,
         "path": IDENTIFY_REAL_RESULT.format(dataset=d, model=m, protocol=p)}
        for d, protocols in IDENTIFICATION.items()
        for p in protocols
        for m in SCORED_MODELS
        if evaluable(config, m, d, p) and real_gallery_wanted(config, d, p)
    ]


def identification_targets():
    """The identification table (it brings every result), or nothing without such a protocol."""
    return ["results/tables/identification.csv"] if IDENTIFICATION else []
