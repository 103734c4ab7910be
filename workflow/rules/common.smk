# Config validation, wildcard constraints and the input functions every stage shares.
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from maskbench.attributes.labels import DEFAULT_AGE_GROUPS
from maskbench.attributes.settings import split_settings
from maskbench.code_closure import closure
from maskbench.config import (
    CHIP_KINDS,
    check_config,
    comparison_pairs,
    comparisons_for,
    embedding_models,
    evaluable,
    masks_for,
    models_of_kind,
    normalisation_protocol,
    unknown_provenance,
    protocol_part,
    train_masks,
    train_split,
    training_code_spec,
    variants_for,
    verification_protocols,
)
from maskbench.protocols.split_spec import STRATEGIES

# the config files in use (the default one unless --configfile named others), for error messages
CONFIG_FILES = [str(f) for f in (workflow.overwrite_configfiles or ["config/config.yaml"])]
try:
    validate(config, schema="../schemas/config.schema.yaml")
    if "splits" in config:
        validate({"splits": config["splits"]}, schema="../schemas/attributes.schema.yaml")
    check_config(config)
except Exception as exc:
    raise WorkflowError(f"invalid configuration ({', '.join(CONFIG_FILES)}): {exc}") from None

SEED = config["seed"]
SPLIT_CFG = split_settings(config)
AGE_GROUPS = list((config.get("attributes") or {}).get("age_groups") or DEFAULT_AGE_GROUPS)

# How each model gets its scores: a network embeds chips (embed), a head maps a base model's
# embeddings (project), an ensemble fuses members' scores (fuse), or scores are imported.
CHIP_MODELS = models_of_kind(config, *CHIP_KINDS)
PROJECTION_MODELS = models_of_kind(config, "projection")
FINETUNE_MODELS = models_of_kind(config, "finetune")
TRAINED_MODELS = PROJECTION_MODELS + FINETUNE_MODELS
ENSEMBLE_MODELS = models_of_kind(config, "ensemble")
IMPORTED_MODELS = models_of_kind(config, "imported")
SCORED_MODELS = embedding_models(config)


def one_of(names):
    """A wildcard constraint matching exactly these names (nothing when there are none)."""
    return "|".join(names) or "(?!)"


wildcard_constraints:
    dataset=r"[a-z0-9][a-z0-9_]*",
    mask=r"[a-z0-9][a-z0-9_]*",
    model=r"[a-z0-9][a-z0-9_]*",
    protocol=r"[a-z0-9][a-z0-9_]*",
    variant=r"[a-z0-9][a-z0-9_]*",
    comparison=r"[a-z0-9_]+-vs-[a-z0-9_]+",
    table=r"[a-z0-9][a-z0-9_]*",
    shard=r"\d+",


SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
LIBRARY = Path(workflow.basedir) / "src" / "maskbench"


def script_code(script, without=()):
    """Library files a rule's script runs (its import closure), declared as inputs so editing one
    module re-runs exactly the stages that use it."""
    return [str(f) for f in closure(SCRIPTS / f"{script}.py", tuple(without), LIBRARY)]


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
    """The chips an embedding job reads: the aligned shard (its bare photos for `unmasked`, its
    real-masked ones for `real`) or one mask type's shard."""
    if wildcards.variant in ("unmasked", "real"):
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
        for protocol in verification_protocols(config, dataset)
        for comparison in comparisons_for(config, dataset, protocol)
        for model in config["models"]
        if evaluable(config, model, dataset, protocol)
    ]


def all_metric_files():
    return [f for dataset in config["datasets"] for f in metric_files(dataset)]


def all_targets():
    # a dataset without identities (UTKFace) has no verification protocol, hence no metrics
    verified = [d for d in config["datasets"] if verification_protocols(config, d)]
    if not verified:
        return expand("results/tables/{table}.csv", table=config["tables"])
    return (
        expand("results/tables/{table}.csv", table=config["tables"])
        + ["results/tables/all_metrics.csv", "results/tables/coverage.csv"]
        + (["results/tables/metrics_by_group.csv"] if any(ds.get("group_by") for ds in config["datasets"].values()) else [])
        + expand(
            "results/figures/{figure}_{dataset}.png",
            figure=["roc", "det", "scores", "mask_effect"],
            dataset=verified,
        )
        + expand("results/figures/training_{model}.png", model=TRAINED_MODELS)
        + ["results/tables/models.csv"]
        + (["results/benchmarks/training_time.csv"] if TRAINED_MODELS else [])
    )


def nist_baseline(wildcards):
    """Unmasked-vs-unmasked scores of the same protocol, for masked-probe comparisons."""
    ref, probe = wildcards.comparison.split("-vs-")
    if ref != "unmasked" or probe == "unmasked":
        return []
    if "unmasked-vs-unmasked" not in comparisons_for(config, wildcards.dataset, wildcards.protocol):
        return []
    return [f"results/{wildcards.dataset}/scores/{wildcards.model}/{wildcards.protocol}/unmasked-vs-unmasked.parquet"]


def table_datasets(wildcards):
    """A table's rows: its datasets, or every dataset with a verification protocol."""
    spec = config["tables"][wildcards.table]
    return spec.get("datasets") or [d for d in config["datasets"] if verification_protocols(config, d)]


def table_cells(wildcards):
    """(dataset, model) -> metrics file of the comparison a table reports."""
    spec = config["tables"][wildcards.table]
    models = spec.get("models") or list(config["models"])
    comparison = f"{spec['ref_variant']}-vs-{spec['probe_variant']}"
    cells = {}
    for dataset in table_datasets(wildcards):
        protocol = (spec.get("protocol") or {}).get(dataset) or verification_protocols(config, dataset)[0]
        for model in models:
            cells[f"{dataset}/{model}"] = f"results/{dataset}/metrics/{model}/{protocol}/{comparison}.json"
    return cells


def metric_entries():
    return [
        {"dataset": d, "model": m, "protocol": p, "comparison": c,
         "path": f"results/{d}/metrics/{m}/{p}/{c}.json"}
        for d in config["datasets"]
        for p in verification_protocols(config, d)
        for c in comparisons_for(config, d, p)
        for m in config["models"]
        if evaluable(config, m, d, p)
    ]


def roc_curves(wildcards):
    protocol = verification_protocols(config, wildcards.dataset)[0]
    return [
        {"label": f"{model}: {comparison.replace('-vs-', ' vs ')}", "model": model, "comparison": comparison,
         "path": f"results/{wildcards.dataset}/scores/{model}/{protocol}/{comparison}.parquet"}
        for comparison in comparisons_for(config, wildcards.dataset, protocol)
        for model in config["models"]
        if evaluable(config, model, wildcards.dataset, protocol)
    ]


def mask_effect_rows(wildcards):
    protocol = verification_protocols(config, wildcards.dataset)[0]
    return [
        {"model": m, "comparison": c, "path": f"results/{wildcards.dataset}/metrics/{m}/{protocol}/{c}.json"}
        for c in comparisons_for(config, wildcards.dataset, protocol)
        for m in config["models"]
        if evaluable(config, m, wildcards.dataset, protocol)
    ]


def protocol_split_file(wildcards):
    """The split a protocol's images are restricted to, if any."""
    part = protocol_part(config, wildcards.protocol)
    return [f"results/{wildcards.dataset}/splits/{part[0]}.parquet"] if part else []


# --- trained models and ensembles ------------------------------------------------------------

MODEL_FILE = "results/models/{model}/model.safetensors"


def embed_model_files(wildcards):
    """A fine-tuned model's checkpoint, trained by the finetune rule."""
    return [MODEL_FILE.format(model=wildcards.model)] if wildcards.model in FINETUNE_MODELS else []


def embed_model_spec(wildcards):
    spec = config["models"][wildcards.model]
    if spec["kind"] == "finetune":
        return {"kind": "finetuned", "checkpoint": MODEL_FILE.format(model=wildcards.model),
                "batch_size": spec.get("batch_size", 64)}
    return spec


def projection_base_shard(wildcards):
    base = config["models"][wildcards.model]["base"]
    return f"results/{wildcards.dataset}/embeddings/{base}/{wildcards.variant}/shard-{wildcards.shard}.parquet"


def training_spec(wildcards):
    """A trained model's `train:` settings for its training code (what to train on is given as inputs)."""
    return training_code_spec(config["models"][wildcards.model])


def training_threads(wildcards):
    """torch threads of a training job: from the config, not from --cores or a profile, so that
    the same config gives the same model bytes wherever it runs."""
    return config["models"][wildcards.model]["train"].get("threads", 1)


def training_datasets(model):
    return list(config["models"][model]["train"]["datasets"])


def head_training_embeddings(wildcards):
    """The base model's embeddings, unmasked and of the mask types trained on, of every training set."""
    base = config["models"][wildcards.model]["base"]
    return [
        f"results/{dataset}/embeddings/{base}/{variant}/shard-{shard}.parquet"
        for dataset in training_datasets(wildcards.model)
        for variant in ["unmasked", *train_masks(config, wildcards.model, dataset)]
        for shard in shards(dataset)
    ]


def training_splits(wildcards):
    strategy = train_split(config["models"][wildcards.model])
    return [f"results/{d}/splits/{strategy}.parquet" for d in training_datasets(wildcards.model)]


def finetune_masked_chips(wildcards):
    dataset = training_datasets(wildcards.model)[0]
    return [
        f"results/{dataset}/masked/{mask}/shard-{shard}.parquet"
        for mask in train_masks(config, wildcards.model, dataset)
        for shard in shards(dataset)
    ]


def finetune_aligned_chips(wildcards):
    dataset = training_datasets(wildcards.model)[0]
    return [f"results/{dataset}/aligned/shard-{shard}.parquet" for shard in shards(dataset)]


def ensemble_member_scores(wildcards):
    return [
        f"results/{wildcards.dataset}/scores/{member}/{wildcards.protocol}/{wildcards.comparison}.parquet"
        for member in config["models"][wildcards.model]["members"]
    ]


def validation_scores(wildcards):
    """Scores of the protocol's validation protocol (same model and comparison): the operating
    threshold of the confusion matrix is chosen on them, never on the pairs it is applied to."""
    val = config["protocols"][wildcards.protocol].get("validation")
    if not val:
        return []
    return [f"results/{wildcards.dataset}/scores/{wildcards.model}/{val}/{wildcards.comparison}.parquet"]


def ensemble_reference_scores(wildcards):
    """Members' scores of the first comparison of the ensemble's normalisation protocol (val
    pairs, never the tested ones): every comparison is normalised with these moments, so its
    comparisons share one scale."""
    norm = normalisation_protocol(config, wildcards.model, wildcards.protocol)
    reference = comparisons_for(config, wildcards.dataset, norm)[0]
    return [
        f"results/{wildcards.dataset}/scores/{member}/{norm}/{reference}.parquet"
        for member in config["models"][wildcards.model]["members"]
    ]


# mask{mask}: `paint_on: image` reads the index and the raw photos too
def mask_paint_on(wildcards):
    return config["masks"][wildcards.mask].get("paint_on") or config["align"].get("paint_on", "chip")


def mask_photo_inputs(wildcards):
    if mask_paint_on(wildcards) != "image":
        return {}
    return {
        "index": f"results/{wildcards.dataset}/index.parquet",
        "acquired": f"resources/raw/{wildcards.dataset}/acquired.json",
    }
