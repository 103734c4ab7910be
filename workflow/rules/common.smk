# Config validation, wildcard constraints and the input functions every stage shares.
import inspect
import os
import sys
import types
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


def _run_this_checkouts_library():
    """This file and every job import maskbench from this checkout's src/: the code its stamps
    record. A maskbench installed elsewhere (another checkout's editable install, a conda env made
    from another checkout) would otherwise run silently in its place."""
    src = str(Path(workflow.basedir, "src").resolve())
    if sys.path[:1] != [src]:
        sys.path.insert(0, src)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if paths[:1] != [src]:
        os.environ.update(PYTHONPATH=os.pathsep.join([src, *filter(None, paths)]))  # set here, not required


_run_this_checkouts_library()

from maskbench.attributes.labels import DEFAULT_AGE_GROUPS
from maskbench.attributes.settings import split_settings
from maskbench.code_closure import closure, refresh_stamp
from maskbench.config import (
    has_real_masks,
    mask_aware_masks,
    mask_aware_settings,
    selection_protocol,
    CHIP_KINDS,
    check_config,
    comparison_pairs,
    comparisons_for,
    DEFAULT_SCORE,
    embedding_models,
    evaluable,
    figure_protocol,
    masks_for,
    models_of_kind,
    normalisation_protocol,
    table_normalised_on,
    table_protocol,
    unknown_provenance,
    protocol_part,
    train_masks,
    train_split,
    training_code_spec,
    variants_for,
    verification_protocols,
)
from maskbench.protocols.split_spec import STRATEGIES, WATCHES_COPIES

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


# Every file the workflow reads or writes, by name: rules, input functions and tables use these
# templates (PATHS[name], or path(name, **wildcards) for one file), never a path spelt out again.
PATHS = {
    "acquired": "resources/raw/{dataset}/acquired.json",
    "index": "results/{dataset}/index.parquet",
    "index_report": "results/{dataset}/index.json",
    "aligned": "results/{dataset}/aligned/shard-{shard}.parquet",
    "aligned_summary": "results/{dataset}/aligned/summary.json",
    "copies": "results/{dataset}/aligned/copies.json",
    "masked": "results/{dataset}/masked/{mask}/shard-{shard}.parquet",
    "masked_summary": "results/{dataset}/masked/{mask}/summary.json",
    "split": "results/{dataset}/splits/{strategy}.parquet",
    "split_report": "results/{dataset}/splits/{strategy}.json",
    "pairs": "results/{dataset}/pairs/{protocol}.parquet",
    "pairs_report": "results/{dataset}/pairs/{protocol}.json",
    "embeddings": "results/{dataset}/embeddings/{model}/{variant}.parquet",
    "scores": "results/{dataset}/scores/{model}/{protocol}/{comparison}.parquet",
    "scores_bob": "results/{dataset}/scores/{model}/{protocol}/{comparison}.{bob}.txt",
    "metrics": "results/{dataset}/metrics/{model}/{protocol}/{comparison}.json",
    "model": "results/models/{model}/model.safetensors",
    "model_curve": "results/models/{model}/curve.parquet",
    "model_report": "results/models/{model}/report.json",
    "model_cache": "results/cache/models",
    "training_benchmark": "results/benchmarks/train/{model}.tsv",
    "training_time": "results/benchmarks/training_time.csv",
    "training_time_md": "results/benchmarks/training_time.md",
    "table": "results/tables/{table}.csv",
    "table_md": "results/tables/{table}.md",
    "figure": "results/figures/{figure}_{dataset}.png",
    "figure_pdf": "results/figures/{figure}_{dataset}.pdf",
    "training_figure": "results/figures/training_{model}.png",
    "identification_protocol": "results/{dataset}/identification/{protocol}/{manifest}",
    "identification_real_protocol": "results/{dataset}/identification/{protocol}/real-vs-real/{manifest}",
    "identification": "results/{dataset}/identification/{model}/{protocol}/{probe_variant}.json",
    "identification_real": "results/{dataset}/identification/{model}/{protocol}/real-vs-real.json",
    "attribute_metrics": "results/{dataset}/attributes/{model}/{strategy}/{train}/metrics.json",
    "attribute_predictions": "results/{dataset}/attributes/{model}/{strategy}/{train}/predictions.parquet",
    "attribute_model": "results/{dataset}/attributes/{model}/{strategy}/{train}/model.safetensors",
    "attribute_timing": "results/{dataset}/attributes/{model}/{strategy}/{train}/timing.json",
    "attribute_figure": "results/figures/attributes/{dataset}/{model}/{strategy}/{train}/{kind}.png",
    "mask_classifier": "results/models/{model}/mask_classifier.json",
    "fusion_weights": "results/{dataset}/fusion/{model}/{protocol}.json",
    "figure_any": "results/figures/{name}.png",
    "figure_any_pdf": "results/figures/{name}.pdf",
    "code_stamp": "results/code/{script}.sha256",
}


def path(name, /, **wildcards):
    """One file of the registry, its wildcards filled in."""
    return PATHS[name].format(**wildcards)


CHECKOUT = Path(workflow.basedir)  # stamps name files from here: src/maskbench/..., workflow/scripts/...
SCRIPTS = CHECKOUT / "workflow" / "scripts"
# the checkout each conda env installs maskbench from (envs/*.post-deploy.sh)
os.environ.update(MASKBENCH_ROOT=str(Path(workflow.basedir).resolve()))
LIBRARY = CHECKOUT / "src" / "maskbench"


def script_files(script, without=()):
    """A rule's script and the library files it runs (its import closure), less the modules in
    ``without``: the script is stamped by its content too, as the library is (profiles/default
    leaves out Snakemake's own `code` trigger, which compares a script's file time only)."""
    script_path = SCRIPTS / f"{script}.py"
    return [str(script_path), *(str(f) for f in closure(script_path, tuple(without), LIBRARY))]


_STAMPED = {}  # stamp name -> its path, brought up to date once per reading of the workflow
_HASHES = {}  # library file -> sha256, for this reading only
_WARNED = []


def _run_in_progress():
    """Whether another Snakemake run holds this working directory (its lock files): a stamp
    rewritten then would be older than the outputs its running jobs write with the code they
    started with, and they would look current. Snakemake's own check of the locks comes later,
    once the DAG is built."""
    locks = Path(".snakemake") / "locks"
    return locks.is_dir() and any(locks.iterdir())


RUN_IN_PROGRESS = _run_in_progress()


def script_code(script, without=(), name=None):
    """The code stamp of a rule's script: one input standing for the script and every library file
    it runs (less the modules in ``without``; such a stamp needs its own ``name``), so editing one
    module re-runs exactly the stages that use it, and a DAG of thousands of jobs does not carry
    each job's dozens of library files. A stamp names the files from the checkout's folder, so a
    moved checkout or working directory changes nothing. Brought up to date here, as the rules are
    read (untouched where the code is unchanged), and the files that changed are named; never in a
    job (a cluster job reads the workflow again) nor while a run is in progress."""
    assert name or not without, "a stamp of part of a script's code needs its own name"
    name = name or script
    stamp = path("code_stamp", script=name)
    if name in _STAMPED or not workflow.is_main_process:
        return stamp
    _STAMPED[name] = stamp
    existed = os.path.exists(stamp)
    if existed and RUN_IN_PROGRESS:
        if not _WARNED:
            _WARNED.append(True)
            print("maskbench: lock files in .snakemake/locks (another run, or a stale lock: --unlock): code stamps "
                  "are left as they are; code edits show once no run holds the directory", file=sys.stderr)
        return stamp
    try:
        changed = refresh_stamp(script_files(script, without), stamp, _HASHES, CHECKOUT)
    except OSError as exc:
        raise WorkflowError(f"cannot bring the code stamp {stamp} up to date: {exc}") from exc
    if changed and existed:  # a new stamp: nothing of that stage has run from here yet
        print(f"maskbench: {stamp} rewritten, code changed: {', '.join(changed)}", file=sys.stderr)
    return stamp


def acquire_stamp(demo):
    """acquire's code stamp: a real dataset's leaves out the demo generator (editing it must not
    re-acquire LFW)."""
    if demo:
        return script_code("acquire")
    return script_code("acquire", without=("maskbench.data.demo",), name="acquire_files")


def acquire_code(wildcards):
    return acquire_stamp(dataset_cfg(wildcards)["layout"] == "demo")


# brought up to date now, as the workflow is read, like every other stamp: written while the DAG is
# built, a stamp could be missing from what Snakemake has already listed of results/code
for _demo in sorted({spec["layout"] == "demo" for spec in config["datasets"].values()}):
    acquire_stamp(_demo)


def shards(dataset):
    return range(config["datasets"][dataset]["shards"])


def dataset_cfg(wildcards):
    return config["datasets"][wildcards.dataset]


def aligned_shards(wildcards):
    return [path("aligned", dataset=wildcards.dataset, shard=s) for s in shards(wildcards.dataset)]


def variant_chips(wildcards):
    """The chips an embedding job reads, in shard order: the aligned shards (their bare photos for
    `unmasked`, their real-masked ones for `real`) or one mask type's shards."""
    if wildcards.variant in ("unmasked", "real"):
        return aligned_shards(wildcards)
    return masked_shards(wildcards.dataset, wildcards.variant)


def comparison_embedding_groups(wildcards):
    """variant -> the model's embedding files, for the two variants a comparison pairs."""
    ref, probe = wildcards.comparison.split("-vs-")
    return {v: embedding_files(wildcards.dataset, wildcards.model, [v]) for v in sorted({ref, probe})}


def comparison_embeddings(wildcards):
    return [p for paths in comparison_embedding_groups(wildcards).values() for p in paths]


def embedding_files(dataset, model, variants):
    """A model's embeddings of a dataset, one file per variant, in the order given."""
    return [path("embeddings", dataset=dataset, model=model, variant=v) for v in variants]


def metric_files(dataset):
    ds = config["datasets"][dataset]
    return [
        path("metrics", dataset=dataset, model=model, protocol=protocol, comparison=comparison)
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
        return expand(PATHS["table"], table=config["tables"])
    return (
        expand(PATHS["table"], table=config["tables"])
        + [path("table", table="all_metrics"), path("table", table="coverage")]
        + ([path("table", table="metrics_by_group")] if any(ds.get("group_by") for ds in config["datasets"].values()) else [])
        + expand(
            PATHS["figure"],
            figure=["roc", "det", "scores", "mask_effect"],
            dataset=verified,
        )
        + expand(PATHS["training_figure"], model=TRAINED_MODELS)
        + [path("table", table="models")]
        + ([PATHS["training_time"]] if TRAINED_MODELS else [])
    )


def nist_baseline(wildcards):
    """Unmasked-vs-unmasked scores of the same protocol, for masked-probe comparisons."""
    ref, probe = wildcards.comparison.split("-vs-")
    if ref != "unmasked" or probe == "unmasked":
        return []
    if "unmasked-vs-unmasked" not in comparisons_for(config, wildcards.dataset, wildcards.protocol):
        return []
    return [path("scores", dataset=wildcards.dataset, model=wildcards.model, protocol=wildcards.protocol,
                 comparison="unmasked-vs-unmasked")]


def metrics_inputs(wildcards):
    """What a comparison's metrics read besides its scores."""
    return {
        "baseline": nist_baseline(wildcards),
        "val_scores": validation_scores(wildcards),
        # metrics per demographic group need the dataset's index (only where group_by is set)
        "index": group_index(wildcards),
    }


METRICS_PARAMS = dict(
    evaluation=config.get("evaluation", {}),
    group_by=lambda wc: dataset_cfg(wc).get("group_by", []),
    # only where age groups are grouped by, so other metrics do not re-run when the bins change
    age_groups=lambda wc: AGE_GROUPS if "age_group" in dataset_cfg(wc).get("group_by", []) else [],
)


def table_datasets(wildcards):
    """A table's rows: its datasets, or every dataset with a verification protocol."""
    spec = config["tables"][wildcards.table]
    return spec.get("datasets") or [d for d in config["datasets"] if verification_protocols(config, d)]


def table_cells(wildcards):
    """The metrics file of the comparison a table reports, per dataset and model."""
    spec = config["tables"][wildcards.table]
    models = spec.get("models") or list(config["models"])
    comparison = f"{spec['ref_variant']}-vs-{spec['probe_variant']}"
    cells = []
    for dataset in table_datasets(wildcards):
        protocol = table_protocol(config, spec, dataset)
        for model in models:
            cells.append({"dataset": dataset, "model": model, "protocol": protocol,
                          "path": path("metrics", dataset=dataset, model=model, protocol=protocol,
                                       comparison=comparison)})
    return cells


def table_cell_files(wildcards):
    return [c["path"] for c in table_cells(wildcards)]


def metric_entries():
    return [
        {"dataset": d, "model": m, "protocol": p, "comparison": c,
         "path": path("metrics", dataset=d, model=m, protocol=p, comparison=c)}
        for d in config["datasets"]
        for p in verification_protocols(config, d)
        for c in comparisons_for(config, d, p)
        for m in config["models"]
        if evaluable(config, m, d, p)
    ]


def roc_curves(wildcards):
    protocol = figure_protocol(config, wildcards.dataset)
    return [
        {"label": f"{model}: {comparison.replace('-vs-', ' vs ')}", "model": model, "comparison": comparison,
         "path": path("scores", dataset=wildcards.dataset, model=model, protocol=protocol, comparison=comparison)}
        for comparison in comparisons_for(config, wildcards.dataset, protocol)
        for model in config["models"]
        if evaluable(config, model, wildcards.dataset, protocol)
    ]


def mask_effect_rows(wildcards):
    protocol = figure_protocol(config, wildcards.dataset)
    return [
        {"model": m, "comparison": c,
         "path": path("metrics", dataset=wildcards.dataset, model=m, protocol=protocol, comparison=c)}
        for c in comparisons_for(config, wildcards.dataset, protocol)
        for m in config["models"]
        if evaluable(config, m, wildcards.dataset, protocol)
    ]


def protocol_split_file(wildcards):
    """The split a protocol's images are restricted to, if any."""
    part = protocol_part(config, wildcards.protocol)
    return [path("split", dataset=wildcards.dataset, strategy=part[0])] if part else []


SPLIT_CODE = script_code("split")
IDENTITY_SPLIT_CODE = script_code("split", without=("maskbench.io.copies",), name="split_identity")


def split_copies_file(wildcards):
    """The dataset's copies of one picture, for a split that keeps them together or counts them
    (not the identity split: it would re-run, and retrain every model, when only copies did)."""
    return [path("copies", dataset=wildcards.dataset)] if wildcards.strategy in WATCHES_COPIES else []


def split_code(wildcards):
    """The split stage's code stamp; the identity split's leaves out the copies reader it never
    calls (editing it must not re-run that split, and so every trained model)."""
    if wildcards.strategy in WATCHES_COPIES:
        return SPLIT_CODE
    return IDENTITY_SPLIT_CODE


def protocol_copies_file(wildcards):
    """The dataset's copies of one picture, for a protocol that draws its own pairs or galleries (a
    listed one, LFW View 2, is taken as listed)."""
    listed = config["protocols"][wildcards.protocol]["kind"] == "lfw_view2"
    return [] if listed else [path("copies", dataset=wildcards.dataset)]


# --- trained models and ensembles ------------------------------------------------------------

MODEL_FILE = PATHS["model"]


def embed_model_files(wildcards):
    """A fine-tuned model's checkpoint, trained by the finetune rule."""
    return [MODEL_FILE.format(model=wildcards.model)] if wildcards.model in FINETUNE_MODELS else []


def embed_model_spec(wildcards):
    spec = config["models"][wildcards.model]
    if spec["kind"] == "finetune":
        return {"kind": "finetuned", "checkpoint": MODEL_FILE.format(model=wildcards.model),
                "batch_size": spec.get("batch_size", 64)}
    return spec


def projection_base(wildcards):
    """The base model's embeddings of the variant a head projects."""
    base = config["models"][wildcards.model]["base"]
    return path("embeddings", dataset=wildcards.dataset, model=base, variant=wildcards.variant)


def model_score(model):
    """The score a model's pairs are compared with (its `score:`)."""
    return config["models"][model].get("score", DEFAULT_SCORE)


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
    base = config["models"][wildcards.model]["base"]
    return [
        p
        for dataset in training_datasets(wildcards.model)
        for p in embedding_files(dataset, base, ["unmasked", *train_masks(config, wildcards.model, dataset)])
    ]


def head_training_groups(wildcards):
    """The same files as {variant: [file]} per training dataset, in the order of its `datasets:`."""
    base = config["models"][wildcards.model]["base"]
    return [
        {variant: embedding_files(dataset, base, [variant])
         for variant in sorted(["unmasked", *train_masks(config, wildcards.model, dataset)])}
        for dataset in training_datasets(wildcards.model)
    ]


def training_splits(wildcards):
    strategy = train_split(config["models"][wildcards.model])
    return [path("split", dataset=d, strategy=strategy) for d in training_datasets(wildcards.model)]


def finetune_masked_chips(wildcards):
    dataset = training_datasets(wildcards.model)[0]
    return [p for mask in train_masks(config, wildcards.model, dataset) for p in masked_shards(dataset, mask)]


def finetune_masked_groups(wildcards):
    """mask type -> its chip shards of the (first) training dataset, in shard order."""
    dataset = training_datasets(wildcards.model)[0]
    return {mask: masked_shards(dataset, mask) for mask in sorted(train_masks(config, wildcards.model, dataset))}


def masked_shards(dataset, mask):
    return [path("masked", dataset=dataset, mask=mask, shard=s) for s in shards(dataset)]


def finetune_aligned_chips(wildcards):
    dataset = training_datasets(wildcards.model)[0]
    return [path("aligned", dataset=dataset, shard=s) for s in shards(dataset)]


def ensemble_member_scores(wildcards):
    return list(ensemble_member_score_files(wildcards).values())


def ensemble_member_score_files(wildcards):
    """member -> its scores of this comparison, in the ensemble's member order."""
    return {
        member: path("scores", dataset=wildcards.dataset, model=member, protocol=wildcards.protocol,
                     comparison=wildcards.comparison)
        for member in config["models"][wildcards.model]["members"]
    }


def validation_scores(wildcards):
    """Scores of the protocol's validation protocol (same model and comparison): the operating
    threshold of the confusion matrix is chosen on them, never on the pairs it is applied to."""
    val = config["protocols"][wildcards.protocol].get("validation")
    if not val:
        return []
    return [path("scores", dataset=wildcards.dataset, model=wildcards.model, protocol=val,
                 comparison=wildcards.comparison)]


def ensemble_reference_scores(wildcards):
    """Members' scores of the first comparison of the ensemble's normalisation protocol (val
    pairs, never the tested ones): every comparison is normalised with these moments, so its
    comparisons share one scale."""
    return list(ensemble_reference_score_files(wildcards).values())


def ensemble_reference_score_files(wildcards):
    """member -> its scores of the reference comparison (see ensemble_reference_scores)."""
    norm = normalisation_protocol(config, wildcards.model, wildcards.protocol)
    reference = comparisons_for(config, wildcards.dataset, norm)[0]
    return {
        member: path("scores", dataset=wildcards.dataset, model=member, protocol=norm, comparison=reference)
        for member in config["models"][wildcards.model]["members"]
    }


# mask{mask}: `paint_on: image` reads the index and the raw photos too
def mask_paint_on(wildcards):
    return config["masks"][wildcards.mask].get("paint_on") or config["align"].get("paint_on", "chip")


def mask_pattern_image(wildcards):
    """A mask type's `pattern_image`, an input so that editing the picture re-runs its branch."""
    image = config["masks"][wildcards.mask].get("pattern_image")
    return [os.path.expanduser(str(image))] if image else []


def mask_photo_inputs(wildcards):
    if mask_paint_on(wildcards) != "image":
        return {}
    return {
        "index": path("index", dataset=wildcards.dataset),
        "acquired": path("acquired", dataset=wildcards.dataset),
    }


# --- identification: which datasets and protocols search a gallery ---------------------------
from maskbench.config import (
    DEFAULT_FPIR_TARGETS,
    DEFAULT_RANKS,
    identification_probe_variants,
    identification_protocols,
    imported_score_path,
    real_gallery_wanted,
    realism_protocol,
)

# dataset -> its identification protocols (datasets without one get no identification job)
IDENTIFICATION = {d: identification_protocols(config, d) for d in config["datasets"]}
IDENTIFICATION = {d: ps for d, ps in IDENTIFICATION.items() if ps}
IDENTIFICATION_PROTOCOLS = sorted({p for ps in IDENTIFICATION.values() for p in ps})


def identification_setting(wildcards, key, default):
    return list(config["protocols"][wildcards.protocol].get(key) or default)


def identification_embedding_groups(wildcards):
    """variant -> the model's embedding files: unmasked (the gallery) and the probe variant."""
    if wildcards.probe_variant not in identification_probe_variants(config, wildcards.dataset, wildcards.protocol):
        raise ValueError(
            f"{wildcards.probe_variant!r} is not a probe variant of protocol {wildcards.protocol!r} "
            f"on {wildcards.dataset!r}"
        )
    return {v: embedding_files(wildcards.dataset, wildcards.model, [v])
            for v in sorted({"unmasked", wildcards.probe_variant})}


def identification_embeddings(wildcards):
    return [p for paths in identification_embedding_groups(wildcards).values() for p in paths]


def real_gallery_embedding_groups(wildcards):
    """The real-masked embeddings ({"real": files}), for a protocol that asks for [real, real]."""
    if not real_gallery_wanted(config, wildcards.dataset, wildcards.protocol):
        raise ValueError(f"protocol {wildcards.protocol!r} on {wildcards.dataset!r} has no [real, real] comparison")
    return {"real": embedding_files(wildcards.dataset, wildcards.model, ["real"])}


def real_gallery_embeddings(wildcards):
    return real_gallery_embedding_groups(wildcards)["real"]


def identification_entries():
    """One result per dataset, identification protocol, model with embeddings and probe variant."""
    return [
        {"dataset": d, "model": m, "protocol": p,
         "path": path("identification", dataset=d, model=m, protocol=p, probe_variant=v)}
        for d, protocols in IDENTIFICATION.items()
        for p in protocols
        for m in SCORED_MODELS
        if evaluable(config, m, d, p)
        for v in identification_probe_variants(config, d, p)
    ] + [
        {"dataset": d, "model": m, "protocol": p,
         "path": path("identification_real", dataset=d, model=m, protocol=p)}
        for d, protocols in IDENTIFICATION.items()
        for p in protocols
        for m in SCORED_MODELS
        if evaluable(config, m, d, p) and real_gallery_wanted(config, d, p)
    ]


def identification_targets():
    """The identification table (it brings every result), or nothing without such a protocol."""
    return [path("table", table="identification")] if IDENTIFICATION else []


def identification_manifests(real=False):
    """Output templates of a gallery/probes protocol (the [real, real] one apart)."""
    name = "identification_real_protocol" if real else "identification_protocol"
    return {key: PATHS[name].replace("{manifest}", file)
            for key, file in (("gallery", "gallery.parquet"), ("probes", "probes.parquet"),
                              ("report", "protocol.json"))}


# --- realism: which metrics the realism table puts side by side -------------------------------


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
                where = {"dataset": dataset, "model": model, "protocol": protocol, "comparison": comparison}
                out.append({**where, "metrics": path("metrics", **where), "scores": path("scores", **where),
                            "index": path("index", dataset=dataset)})
    return out


def realism_targets():
    return [path("table", table="realism"), path("figure_any", name="realism")] if realism_entries() else []


def realism_labelled_sets():
    """Datasets of the realism table whose real masks are labelled by kind (MFR2): dataset ->
    where their images are and the index options (for the breakdown by mask type)."""
    datasets = {e["dataset"] for e in realism_entries()}
    return {d: {"acquired": path("acquired", dataset=d),
                "images": config["datasets"][d].get("images", "images"),
                "options": config["datasets"][d].get("index_options", {})}
            for d in sorted(datasets) if config["datasets"][d]["layout"] == "mfr2"}


# --- score files exchanged with other tools ---------------------------------------------------


def imported_score_file(wildcards):
    """The file an imported model's scores are read from, for this dataset, protocol and comparison."""
    spec = config["models"][wildcards.model]
    return imported_score_path(spec["scores"], wildcards.dataset, wildcards.protocol, wildcards.comparison)


def imported_pairs(wildcards):
    """The pairs manifest a CSV score file is matched to; Bob files carry their own labels."""
    if config["models"][wildcards.model]["format"] != "csv":
        return []
    return [path("pairs", dataset=wildcards.dataset, protocol=wildcards.protocol)]


# --- per-dataset and per-model inputs the rules used to spell out ------------------------------


def dataset_images(wildcards):
    return config["datasets"][wildcards.dataset].get("images", "images")


def masked_summary_shards(wildcards):
    return masked_shards(wildcards.dataset, wildcards.mask)


def all_masked_shards(wildcards):
    """Every mask type's chip shards of a dataset."""
    return [p for m in masks_for(config, wildcards.dataset) for p in masked_shards(wildcards.dataset, m)]


def masked_shard_groups(wildcards):
    """mask type -> its chip shards of a dataset, in shard order."""
    return {m: masked_shards(wildcards.dataset, m) for m in sorted(masks_for(config, wildcards.dataset))}


def group_index(wildcards):
    """The dataset's index, for metrics per demographic group (only where group_by is set)."""
    return [path("index", dataset=wildcards.dataset)] if dataset_cfg(wildcards).get("group_by") else []


def coverage_summaries():
    """dataset -> its alignment summary and mask type -> masking summary, for the coverage table."""
    return {d: {"aligned": path("aligned_summary", dataset=d),
                "masked": {m: path("masked_summary", dataset=d, mask=m) for m in masks_for(config, d)}}
            for d in config["datasets"]}


def table_figures(wildcards):
    """A table is delivered with the ROC figures of its datasets."""
    return [path("figure", figure="roc", dataset=d) for d in table_datasets(wildcards)]


def trained_model_reports():
    return {m: path("model_report", model=m) for m in TRAINED_MODELS}


def training_benchmarks():
    return {m: path("training_benchmark", model=m) for m in TRAINED_MODELS}


# --- attributes (only with an `attributes:` section; ATTRIBUTE_RUNS is set by attributes.smk) ---

ATTRIBUTE_TABLES = [path("table", table=t) for t in ("attributes", "attributes_by_group", "attributes_privacy",
                                                      "attributes_heads", "attributes_abstention")]


def attribute_targets():
    """The attribute tables (they bring their figures), or nothing without `attributes:`."""
    return list(ATTRIBUTE_TABLES) if "attributes" in config else []


def variant_embeddings(wildcards):
    """variant -> a model's embedding files of a dataset (a head is tested on every variant)."""
    return {v: embedding_files(wildcards.dataset, wildcards.model, [v]) for v in variants_for(config, wildcards.dataset)}


def all_variant_embeddings(wildcards):
    return [p for paths in variant_embeddings(wildcards).values() for p in paths]


def dataset_attribute_runs(wildcards):
    return [r for r in ATTRIBUTE_RUNS if r["dataset"] == wildcards.dataset]


def dataset_attribute_metrics(wildcards):
    return [path("attribute_metrics", **r) for r in dataset_attribute_runs(wildcards)]


def dataset_attribute_figures(wildcards):
    return [
        {"metrics": path("attribute_metrics", **r),
         "figures": {kind: path("attribute_figure", kind=kind, **r) for kind in ATTRIBUTE_FIGURES}}
        for r in dataset_attribute_runs(wildcards)
    ]


# contact sheets: real-masked photos beside each synthetic mask type, for datasets with real masks
def contact_sheet_datasets():
    """Datasets with photos of real masks and at least one synthetic mask type."""
    return [d for d in config["datasets"] if has_real_masks(config, d) and masks_for(config, d)]


def contact_sheet_inputs(wildcards):
    return {
        "aligned": aligned_shards(wildcards),
        "masked": [path("masked", dataset=wildcards.dataset, mask=m, shard=s)
                   for m in masks_for(config, wildcards.dataset) for s in shards(wildcards.dataset)],
    }


def contact_sheet_targets():
    return [path("figure_any", name=f"contact_sheet_{d}") for d in contact_sheet_datasets()]


# mask-aware ensembles (mask_aware.smk): a mask classifier on a base model's embeddings, weights chosen on val
MASK_AWARE_MODELS = [m for m in ENSEMBLE_MODELS if config["models"][m].get("mask_aware")]


def mask_classifier_embedding_groups(wildcards):
    """dataset -> variant -> the base model's embedding files the mask classifier learns from."""
    block = config["models"][wildcards.model]["mask_aware"]
    return {dataset: {variant: embedding_files(dataset, block["base"], [variant])
                      for variant in ["unmasked", *mask_aware_masks(config, wildcards.model, dataset)]}
            for dataset in block["datasets"]}


def mask_classifier_real_groups(wildcards):
    """dataset -> the base model's embeddings of its real-masked photos (checked, never learnt)."""
    block = config["models"][wildcards.model]["mask_aware"]
    return {dataset: embedding_files(dataset, block["base"], ["real"])
            for dataset in block["datasets"] if has_real_masks(config, dataset)}


def mask_classifier_real_embeddings(wildcards):
    return [p for paths in mask_classifier_real_groups(wildcards).values() for p in paths]


def mask_classifier_embeddings(wildcards):
    return [p for variants in mask_classifier_embedding_groups(wildcards).values()
            for paths in variants.values() for p in paths]


def mask_classifier_splits(wildcards):
    return [path("split", dataset=d, strategy="identity") for d in config["models"][wildcards.model]["mask_aware"]["datasets"]]


def mask_aware_probe_embeddings(dataset, model, variant):
    base = config["models"][model]["mask_aware"]["base"]
    return [path("embeddings", dataset=dataset, model=base, variant=variant)]


def mask_aware_selection_score_groups(wildcards):
    """comparison -> the members' scores of it (in member order), for every unmasked-vs-<variant>
    comparison of the protocol the weights are chosen on."""
    select = selection_protocol(config, wildcards.model, wildcards.protocol)
    held_out = set(masks_for(config, wildcards.dataset)) - set(mask_aware_masks(config, wildcards.model,
                                                                                 wildcards.dataset))
    return {
        comparison: [path("scores", dataset=wildcards.dataset, model=member, protocol=select, comparison=comparison)
                     for member in config["models"][wildcards.model]["members"]]
        for comparison in comparisons_for(config, wildcards.dataset, select)
        if comparison.startswith("unmasked-vs-") and comparison.split("-vs-")[1] not in held_out
    }


def mask_aware_selection_scores(wildcards):
    return [p for paths in mask_aware_selection_score_groups(wildcards).values() for p in paths]


def mask_aware_selection_probe_groups(wildcards):
    """probe variant -> the base model's embeddings of it, for the same comparisons."""
    return {
        comparison.split("-vs-")[1]: mask_aware_probe_embeddings(wildcards.dataset, wildcards.model,
                                                                 comparison.split("-vs-")[1])
        for comparison in mask_aware_selection_score_groups(wildcards)
    }


def mask_aware_selection_probes(wildcards):
    return [p for paths in mask_aware_selection_probe_groups(wildcards).values() for p in paths]


def mask_aware_comparison_probes(wildcards):
    probe = wildcards.comparison.split("-vs-")[1]
    return mask_aware_probe_embeddings(wildcards.dataset, wildcards.model, probe)


def cache_signatures(rules):
    """Give each function of these rules its signature once, instead of once per job.

    Snakemake inspects an input, params or resources function's signature every time it calls it
    (about three times per job); inspect.signature returns a function's __signature__ when one is
    set. Planning paper.yaml's 1,600 jobs makes 20,000 fewer inspections (~0.15 s of ~5 s).
    Parameters are those the function declares, so what Snakemake passes to it is unchanged.
    """
    for each in rules:
        resources = [getattr(r, "_evaluator", None) for r in each.resources.values()]
        for item in [*each.input, *each.params, *each.log, *each.output, *resources]:
            # unpack(f) and flagged files hold their function as .callable (of the file, for _IOFile)
            func = getattr(item, "callable", None) or getattr(getattr(item, "_file", None), "callable", item)
            if isinstance(func, types.FunctionType) and "__signature__" not in vars(func):
                func.__signature__ = inspect.signature(func)
