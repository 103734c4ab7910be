"""Checks of the configuration beyond its JSON schema, and the names derived from it.

The schema checks keys and types; here we check what refers to what (a dataset's protocols
exist, a table names real variants) so a typo fails at start-up with the name in the message.
"""

from __future__ import annotations

import os
from typing import Any

from maskbench.training.specs import FinetuneSpec, loss_options, resolve_spec
from maskbench.variants import MASKED, REAL, UNMASKED


# group attribute (datasets.<d>.group_by) -> the index column it comes from
GROUP_COLUMNS = {"sex": "sex", "race": "race", "age_group": "age"}


class ConfigError(ValueError):
    """A configuration that validates against the schema but does not make sense."""


def masks_for(config: dict[str, Any], dataset: str) -> list[str]:
    """Mask types painted onto a dataset (its own list, or every configured mask)."""
    return list(config["datasets"][dataset].get("masks") or config["masks"])


def _has_groups(ds: dict[str, Any]) -> bool:
    """Whether a dataset's layout groups its images (videos: near-duplicate frames)."""
    from maskbench.data.index import GROUPED_LAYOUTS

    return ds["layout"] in GROUPED_LAYOUTS


def has_real_masks(config: dict[str, Any], dataset: str) -> bool:
    """Whether a dataset holds photos of real masks (its layout says so, or the demo draws some)."""
    from maskbench.data.index import REAL_MASK_LAYOUTS

    ds = config["datasets"][dataset]
    return ds["layout"] in REAL_MASK_LAYOUTS or bool((ds.get("generate") or {}).get("real_masks"))


def variants_for(config: dict[str, Any], dataset: str) -> list[str]:
    return [UNMASKED, *masks_for(config, dataset)]


def _expand_variant(config: dict[str, Any], dataset: str, variant: str) -> list[str]:
    return masks_for(config, dataset) if variant == MASKED else [variant]


def comparison_pairs(config: dict[str, Any], dataset: str, protocol: str) -> list[tuple[str, str]]:
    """(ref_variant, probe_variant) pairs of a protocol on a dataset, with `masked` expanded.

    ``[unmasked, masked]`` gives one comparison per mask type; ``[masked, masked]`` gives the
    same mask type on both sides (name two mask types to compare different ones).
    """
    out: list[tuple[str, str]] = []
    for ref, probe in config["protocols"][protocol]["comparisons"]:
        if ref == MASKED and probe == MASKED:
            expanded = [(m, m) for m in masks_for(config, dataset)]
        else:
            expanded = [
                (r, p)
                for r in _expand_variant(config, dataset, ref)
                for p in _expand_variant(config, dataset, probe)
            ]
        out.extend(c for c in expanded if c not in out)
    return out


def verification_protocols(config: dict[str, Any], dataset: str) -> list[str]:
    """A dataset's pair protocols (an identification protocol searches a gallery instead)."""
    return [p for p in config["datasets"][dataset]["protocols"] if config["protocols"][p]["kind"] != "identification"]


def comparisons_for(config: dict[str, Any], dataset: str, protocol: str) -> list[str]:
    return [f"{r}-vs-{p}" for r, p in comparison_pairs(config, dataset, protocol)]


def realism_protocol(config: dict[str, Any], dataset: str) -> str | None:
    """A real-masked dataset's first verification protocol comparing unmasked with real (the
    realism table's), or None."""
    if not has_real_masks(config, dataset):
        return None
    for protocol in verification_protocols(config, dataset):
        if (UNMASKED, REAL) in comparison_pairs(config, dataset, protocol):
            return protocol
    return None


def check_config(config: dict[str, Any]) -> None:
    """Raise ConfigError naming the first dangling reference in the config."""
    masks = set(config["masks"])
    for name, spec in config["masks"].items():
        image = (spec or {}).get("pattern_image")
        if image and not os.path.isfile(os.path.expanduser(str(image))):
            raise ConfigError(f"masks.{name}.pattern_image: {image} is not a file (a relative path starts at the "
                              "working directory)")
    for reserved in {UNMASKED, MASKED, REAL} & masks:
        raise ConfigError(f"masks.{reserved}: {reserved!r} names a variant; choose another mask name")
    for name, ds in config["datasets"].items():
        for mask in ds.get("masks") or []:
            if mask not in masks:
                raise ConfigError(f"datasets.{name}.masks: unknown mask type {mask!r}; known: {sorted(masks)}")
        for protocol in ds["protocols"]:
            if protocol not in config["protocols"]:
                raise ConfigError(
                    f"datasets.{name}.protocols: unknown protocol {protocol!r}; "
                    f"known: {sorted(config['protocols'])}"
                )
            spec = config["protocols"][protocol]
            if not has_real_masks(config, name) and any(REAL in c for c in spec["comparisons"]):
                raise ConfigError(
                    f"protocol {protocol!r} compares variant {REAL!r} (photos of real masks), but dataset "
                    f"{name!r} has none: only the layouts real_masked, mfr2, rmfrd and rof (or a demo with "
                    f"generate.real_masks) hold them; give {name!r} a protocol without {REAL!r}"
                )
            if spec["kind"] == IDENTIFICATION and _has_groups(ds):
                raise ConfigError(
                    f"protocol {protocol!r} (identification) on dataset {name!r}: its {ds['layout']!r} layout "
                    f"groups images by video, and a search would meet frames of the video its gallery image "
                    f"came from (near-duplicates: rank-1 inflated); give {name!r} verification protocols only"
                )
            if spec["kind"] == "lfw_view2":
                key = spec.get("pairs_file", "pairs")
                if key not in (ds.get("files") or {}):
                    raise ConfigError(
                        f"protocol {protocol!r} (lfw_view2) needs datasets.{name}.files.{key}: "
                        "the LFW-style pairs.txt"
                    )
        if ds.get("group_by"):
            check_group_by(config, name)
        if ds["layout"] == "demo" and "generate" not in ds:
            raise ConfigError(f"datasets.{name}: the demo layout needs a `generate` entry")
        if ds["layout"] != "demo" and ds.get("images", "images") not in (ds.get("files") or {}):
            raise ConfigError(f"datasets.{name}.files needs an `{ds.get('images', 'images')}` entry")
    for protocol, spec in config["protocols"].items():
        val = spec.get("validation")
        if val is not None:
            if val == protocol or val not in config["protocols"]:
                raise ConfigError(f"protocols.{protocol}.validation: {val!r} must name another protocol")
            missing = [c for c in spec["comparisons"] if c not in config["protocols"][val]["comparisons"]]
            if missing:
                raise ConfigError(f"protocols.{protocol}.validation: {val!r} lacks the comparisons {missing}")
            part = protocol_part(config, protocol)
            if part is None or part[1] != "test" or protocol_part(config, val) != (part[0], "val"):
                raise ConfigError(
                    f"protocols.{protocol}.validation: a threshold chosen on {val!r} may only be applied to "
                    f"images it never saw: restrict {protocol!r} to `split: {{strategy: identity, part: test}}` "
                    f"and {val!r} to the val part of the same split"
                )
            for name, ds in config["datasets"].items():
                if protocol in ds["protocols"] and val not in ds["protocols"]:
                    raise ConfigError(f"datasets.{name}.protocols: add {val!r}, the validation protocol of {protocol!r}")
        for ref, probe in spec["comparisons"]:
            for variant in (ref, probe):
                if variant not in masks | {UNMASKED, MASKED, REAL}:
                    raise ConfigError(
                        f"protocols.{protocol}.comparisons: unknown variant {variant!r}; "
                        f"use unmasked, masked, real or one of {sorted(masks)}"
                    )
            if REAL in (ref, probe) and MASKED in (ref, probe):
                raise ConfigError(f"protocols.{protocol}.comparisons: [{ref}, {probe}]: a real-masked photo "
                                  "is never painted over; compare real with unmasked or real")
    for table, spec in config["tables"].items():
        if table in ("all_metrics", "coverage", "attributes", "attributes_by_group", "metrics_by_group"):
            raise ConfigError(f"tables: `{table}` is the name of a built-in table; choose another")
        for key in ("ref_variant", "probe_variant"):
            if spec[key] not in masks | {UNMASKED, REAL}:
                raise ConfigError(f"tables.{table}.{key}: unknown variant {spec[key]!r}")
        for dataset in spec.get("datasets") or []:
            if dataset not in config["datasets"]:
                raise ConfigError(f"tables.{table}.datasets: unknown dataset {dataset!r}")
        if REAL in (spec["ref_variant"], spec["probe_variant"]):
            for dataset in spec.get("datasets") or list(config["datasets"]):
                if dataset in config["datasets"] and not has_real_masks(config, dataset):
                    raise ConfigError(f"tables.{table}: variant {REAL!r} but dataset {dataset!r} has no photos of "
                                      f"real masks; list the datasets that have them under tables.{table}.datasets")
        for model in spec.get("models") or []:
            if model not in config["models"]:
                raise ConfigError(f"tables.{table}.models: unknown model {model!r}")
        for dataset, protocol in (spec.get("protocol") or {}).items():
            if protocol not in config["datasets"].get(dataset, {}).get("protocols", []):
                raise ConfigError(f"tables.{table}.protocol: {dataset!r} has no protocol {protocol!r}")
    check_models(config)
    for name, ds in config["datasets"].items():
        for protocol in verification_protocols(config, name):
            for model in models_of_kind(config, "ensemble"):
                if evaluable(config, model, name, protocol):
                    normalisation_protocol(config, model, protocol)
                    if config["models"][model].get("mask_aware"):
                        check_mask_aware_selection(config, model, name, protocol)
    for table, spec in config["tables"].items():
        for dataset in spec.get("datasets") or list(config["datasets"]):
            if not verification_protocols(config, dataset):
                continue
            protocol = table_protocol(config, spec, dataset)
            if config["protocols"][protocol]["kind"] == "identification":
                raise ConfigError(f"tables.{table}.protocol: {protocol!r} is an identification protocol; "
                                  "its results are in results/tables/identification.csv")
            for model in spec.get("models") or config["models"]:
                seen = seen_by(config, model, dataset, protocol)
                if seen is not None:
                    strategy, learnt = seen
                    if strategy == ALL_IMAGES:
                        raise ConfigError(
                            f"tables.{table}: model {model!r} {learnt} with no split that keeps people "
                            f"unseen (none declared in trained_on, a split by image, sources on different splits, "
                            f"or weights chosen on a protocol without one), so no protocol of {dataset!r} tests it on "
                            f"unseen people; leave {dataset!r} out of the table (its `datasets:`) or give "
                            f"it that split"
                        )
                    raise ConfigError(
                        f"tables.{table}: model {model!r} {learnt}, so it can only be "
                        f"tested on a protocol restricted to the test part of its split; protocol "
                        f"{protocol!r} is not (give the table a `protocol:` for {dataset!r} with "
                        f"`split: {{strategy: {strategy}, part: test}}`)"
                    )


# --- models: how each kind gets its embeddings or scores --------------------------------------

CHIP_KINDS = ("dlib_resnet", "torchvision", "dicta_checkpoint", "finetuned", "finetune")
"""Kinds that embed chips with a network (``finetune`` first trains it)."""
TRAINED_KINDS = ("projection", "finetune")
"""Kinds trained inside the workflow, on the train part of an identity split."""


WORKFLOW_TRAIN_KEYS = ("datasets", "split", "variants", "threads")
"""`train:` keys the workflow reads (what to train on, where); the rest goes to the training code."""


DEFAULT_SCORE = "neg_l2"  # a model without `score:` is scored so (dlib's convention)


def training_code_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A model's `train:` settings without the workflow's own keys. A fine-tuned backbone keeps
    its epoch on val under the score it is benchmarked with (its `score:`, neg_l2 by default)
    unless `val_score` says otherwise: the unmasked tolerance must hold for the reported EER."""
    out = {k: v for k, v in spec["train"].items() if k not in WORKFLOW_TRAIN_KEYS}
    if spec.get("kind") == "finetune":
        out.setdefault("val_score", spec.get("score", DEFAULT_SCORE))
    return out


def check_training_spec(name: str, spec: dict[str, Any]) -> None:
    """Parse a trained model's settings now, so a bad one fails at start-up, not after hours of
    embedding (no torch: maskbench.training.specs parses without it)."""
    try:
        if spec["kind"] == "finetune":
            FinetuneSpec.from_dict(training_code_spec(spec))
        else:
            loss_options(resolve_spec(training_code_spec(spec), base_dim=128)["loss"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"models.{name}.train: {exc}") from None


def models_of_kind(config: dict[str, Any], *kinds: str) -> list[str]:
    return [name for name, spec in config["models"].items() if spec["kind"] in kinds]


def embedding_models(config: dict[str, Any]) -> list[str]:
    """Models whose scores come from their own embeddings (chip networks and projection heads)."""
    return models_of_kind(config, *CHIP_KINDS, "projection")


def train_split(spec: dict[str, Any]) -> str:
    return spec.get("train", {}).get("split", "identity")


EXTERNAL_KINDS = ("dicta_checkpoint", "finetuned", "imported")
"""Kinds whose training happened elsewhere: what they learnt from is what `trained_on` declares."""
ALL_IMAGES = "all"
"""trained_on value: the model may have seen any image of the dataset (no split protects it)."""


def trained_on(config: dict[str, Any], model: str) -> dict[str, str]:
    """dataset -> split strategy of every dataset whose train part taught ``model``, or
    :data:`ALL_IMAGES` where it may have seen the whole set (through a projection's base or an
    ensemble's members too). A model of any kind declares its own with ``trained_on:
    {datasets, split}`` (no split: all images). Where its sources disagree on a dataset (one saw
    every image, or two learnt on different splits' train parts), no part of that dataset is
    unseen by all of them: the dataset counts as :data:`ALL_IMAGES`, whatever their order."""
    spec = config["models"][model]
    out: dict[str, str] = {}

    def learnt(more: dict[str, str]) -> None:
        for dataset, strategy in more.items():
            out[dataset] = strategy if out.get(dataset, strategy) == strategy else ALL_IMAGES

    declared = spec.get("trained_on") or {}
    learnt({d: declared.get("split") or ALL_IMAGES for d in declared.get("datasets") or []})
    if spec["kind"] in TRAINED_KINDS:
        learnt({d: train_split(spec) for d in spec["train"]["datasets"]})
    if spec["kind"] == "projection":
        learnt(trained_on(config, spec["base"]))
    if spec["kind"] == "ensemble":
        for member in spec["members"]:
            learnt(trained_on(config, member))
    if spec.get("mask_aware"):  # its mask classifier learns on the train identities of its datasets
        learnt({d: "identity" for d in spec["mask_aware"]["datasets"]})
        learnt(trained_on(config, spec["mask_aware"]["base"]))
    return out


def unknown_provenance(config: dict[str, Any], model: str) -> list[str]:
    """The models behind ``model`` (itself, a projection's base, an ensemble's members) trained
    elsewhere on data not declared with `trained_on`: their cells may include people they saw."""
    spec = config["models"][model]
    out = [model] if spec["kind"] in EXTERNAL_KINDS and "trained_on" not in spec else []
    for dep in ([spec["base"]] if spec["kind"] == "projection" else []) + list(spec.get("members") or []):
        out.extend(m for m in unknown_provenance(config, dep) if m not in out)
    return out


def protocol_part(config: dict[str, Any], protocol: str) -> tuple[str, str] | None:
    """(split strategy, part) a protocol's images are restricted to, or None for all images."""
    split = config["protocols"][protocol].get("split")
    return (split["strategy"], split["part"]) if split else None


def evaluable(config: dict[str, Any], model: str, dataset: str, protocol: str) -> bool:
    """False where a model would be tested on images it may have learnt from (:func:`seen_by`)."""
    return seen_by(config, model, dataset, protocol) is None


def seen_by(config: dict[str, Any], model: str, dataset: str, protocol: str) -> tuple[str, str] | None:
    """Why ``model`` may have learnt from images ``protocol`` tests it on in ``dataset``: (the split
    strategy whose test part alone it may be tested on, what it learnt), or None where it may not.
    A model learns from the train part of the datasets it was trained on; a mask-aware ensemble
    also from the tested dataset's val pairs, on which it chooses its weights by EER."""
    part = protocol_part(config, protocol)
    strategy = trained_on(config, model).get(dataset)
    if strategy not in (None, ALL_IMAGES, "identity"):
        strategy = ALL_IMAGES  # a split by image (random, uniform, per_identity) puts a person in every part
    if strategy is not None and part != (strategy, "test"):
        return strategy, f"was trained on {dataset!r}"
    chosen_on = weights_chosen_on(config, model, protocol)
    if chosen_on is not None and part != (chosen_on[0], "test"):
        return chosen_on[0], f"chooses its mask-aware weights on val pairs of {dataset!r}"
    return None


def weights_chosen_on(config: dict[str, Any], model: str, protocol: str) -> tuple[str, str] | None:
    """(split strategy, part) of the val pairs a mask-aware ensemble tested on ``protocol`` chooses
    its weights on (with their labels: it learns from them), or None (not mask-aware, or no such
    protocol: the config check says so). A plain ensemble's z-normalisation uses no labels."""
    spec = config["models"][model]
    if not spec.get("mask_aware"):
        return None
    select = (mask_aware_settings(spec).get("select_on") or spec.get("normalise_on")
              or config["protocols"][protocol].get("validation"))
    if not select or select not in config["protocols"]:
        return None
    return protocol_part(config, select) or (ALL_IMAGES, "all")


def check_models(config: dict[str, Any]) -> None:
    """Bases, members and training datasets exist; a model never depends on itself."""
    models = config["models"]
    for name, spec in models.items():
        kind = spec["kind"]
        if kind == "projection":
            base = spec["base"]
            if base not in models or models[base]["kind"] not in (*CHIP_KINDS, "projection"):
                raise ConfigError(
                    f"models.{name}.base: {base!r} must name a model with embeddings "
                    f"(one of {embedding_models(config)})"
                )
        if kind == "ensemble":
            for member in spec["members"]:
                if member not in models or member == name or models[member]["kind"] == "ensemble":
                    raise ConfigError(
                        f"models.{name}.members: {member!r} must name another model that is not an ensemble"
                    )
            weights = spec.get("member_weights")
            if weights is not None and len(weights) != len(spec["members"]):
                raise ConfigError(f"models.{name}.member_weights: one weight per member ({len(spec['members'])})")
            if spec.get("mask_aware"):
                check_mask_aware_model(config, name)
        if kind == "ensemble":
            for member in spec["members"]:
                member_spec = models[member]
                if member_spec["kind"] == "imported" and member_spec["format"] != "csv":
                    raise ConfigError(
                        f"models.{name}.members: {member!r} imports Bob-format scores, whose lines are not "
                        "tied to the pairs manifest; import it as CSV with pair ids to fuse it"
                    )
        for dataset in (spec.get("trained_on") or {}).get("datasets") or []:
            if dataset not in config["datasets"]:
                raise ConfigError(f"models.{name}.trained_on.datasets: unknown dataset {dataset!r}")
        if kind == "ensemble" and spec.get("normalise_on") is not None:
            norm = spec["normalise_on"]
            part = protocol_part(config, norm) if norm in config["protocols"] else None
            if part is None or part[1] == "test" or config["protocols"][norm]["kind"] == "identification":
                raise ConfigError(
                    f"models.{name}.normalise_on: {norm!r} must name a pair protocol restricted to the val "
                    "(or train) part of a split: the z-normalisation is never fitted on test scores"
                )
        if kind in TRAINED_KINDS:
            check_training_spec(name, spec)
            for dataset in spec["train"]["datasets"]:
                if dataset not in config["datasets"]:
                    raise ConfigError(f"models.{name}.train.datasets: unknown dataset {dataset!r}")
            if kind == "finetune" and len(spec["train"]["datasets"]) != 1:
                raise ConfigError(f"models.{name}.train.datasets: fine-tuning trains on one dataset")
            for variant in spec["train"].get("variants") or []:
                if variant not in set(config["masks"]) | {MASKED}:
                    raise ConfigError(
                        f"models.{name}.train.variants: unknown mask {variant!r}; use masked or one of "
                        f"{sorted(config['masks'])}"
                    )
                for dataset in spec["train"]["datasets"]:
                    if variant != MASKED and variant not in masks_for(config, dataset):
                        raise ConfigError(
                            f"models.{name}.train.variants: {variant!r} is not painted on {dataset!r} "
                            f"(its masks: {masks_for(config, dataset)})"
                        )
    def walk(model: str, path: tuple[str, ...]) -> None:
        if model in path:
            raise ConfigError(f"models: {' -> '.join((*path, model))} depends on itself")
        spec = models[model]
        for dep in ([spec["base"]] if spec["kind"] == "projection" else []) + list(spec.get("members") or []):
            walk(dep, (*path, model))

    for model in models:
        walk(model, ())


def normalisation_protocol(config: dict[str, Any], model: str, protocol: str) -> str:
    """The protocol whose member scores fix an ensemble's z-normalisation when it is tested on
    ``protocol``: its `normalise_on`, else the tested protocol's `validation` protocol; never the
    tested pairs themselves."""
    norm = config["models"][model].get("normalise_on") or config["protocols"][protocol].get("validation")
    if not norm:
        raise ConfigError(
            f"models.{model}: an ensemble tested on {protocol!r} needs scores that are not test scores to "
            f"fix its z-normalisation: set models.{model}.normalise_on to a protocol on the val part of a "
            f"split (or give {protocol!r} a `validation:` protocol)"
        )
    return norm


def table_protocol(config: dict[str, Any], spec: dict[str, Any], dataset: str) -> str:
    """The protocol a table (``spec``) reports for ``dataset``: its `protocol:` entry for it, else
    the dataset's first verification protocol."""
    return (spec.get("protocol") or {}).get(dataset) or verification_protocols(config, dataset)[0]


def figure_protocol(config: dict[str, Any], dataset: str) -> str:
    """The protocol a dataset's ROC, DET, histogram and mask-effect figures show: the first of its
    verification protocols on which the most models may be tested (LFW's first, View 2, tests dlib
    alone, its test pairs every model)."""
    protocols = verification_protocols(config, dataset)
    evaluated = [sum(evaluable(config, m, dataset, p) for m in config["models"]) for p in protocols]
    return protocols[evaluated.index(max(evaluated))]


def normalised_on_tested(config: dict[str, Any], model: str, protocol: str) -> str | None:
    """The protocol whose member scores z-normalise ensemble ``model`` tested on ``protocol`` where
    its pairs may share images with the tested ones, else None (not an ensemble, or the two are
    different parts of one split). The normalisation takes only the scores' mean and spread, no
    labels: allowed, but a reader of the table should know."""
    if config["models"][model]["kind"] != "ensemble":
        return None
    norm = normalisation_protocol(config, model, protocol)
    tested, used = protocol_part(config, protocol), protocol_part(config, norm)
    if tested and used and tested[0] == used[0] and tested[1] != used[1]:
        return None
    return norm


def table_normalised_on(config: dict[str, Any], table: str) -> dict[str, dict[str, str]]:
    """model -> {dataset: protocol} for the ensembles of a table z-normalised on pairs that may share
    images with the pairs it reports (normalised_on_tested): the table footnotes them."""
    spec = config["tables"][table]
    out: dict[str, dict[str, str]] = {}
    for dataset in spec.get("datasets") or list(config["datasets"]):
        if not verification_protocols(config, dataset):
            continue
        protocol = table_protocol(config, spec, dataset)
        for model in spec.get("models") or config["models"]:
            norm = normalised_on_tested(config, model, protocol)
            if norm:
                out.setdefault(model, {})[dataset] = norm
    return out


def train_masks(config: dict[str, Any], model: str, dataset: str) -> list[str]:
    """Mask types a trained model sees on a dataset (default: all of the dataset's)."""
    wanted = config["models"][model]["train"].get("variants") or [MASKED]
    out: list[str] = []
    for variant in wanted:
        out.extend(m for m in _expand_variant(config, dataset, variant) if m not in out)
    return out


def mask_aware_masks(config: dict[str, Any], model: str, dataset: str) -> list[str]:
    """Mask types a mask-aware ensemble learns from on a dataset (its classifier and its weights):
    those its trained members saw, so a type they hold out stays unseen by the whole model; every
    type of the dataset where no member is trained."""
    trained = [m for m in config["models"][model]["members"] if "train" in config["models"][m]]
    if not trained:
        return masks_for(config, dataset)
    seen = {mask for member in trained for mask in train_masks(config, member, dataset)}
    return [m for m in masks_for(config, dataset) if m in seen]


def check_group_by(config: dict[str, Any], dataset: str) -> None:
    """Raise ConfigError when a dataset's ``group_by`` names an attribute its layout cannot give,
    or the dataset has no verification pairs to group."""
    from maskbench.data.index import CELEBA_ATTRIBUTE_FILE, layout_attributes

    ds = config["datasets"][dataset]
    if not verification_protocols(config, dataset):
        raise ConfigError(f"datasets.{dataset}.group_by: {dataset!r} has no verification protocol, so no pairs "
                          "to group; remove group_by or give it a verification protocol")
    given = layout_attributes(ds["layout"], ds.get("index_options"))
    for attribute in ds["group_by"]:
        if GROUP_COLUMNS[attribute] in given:
            continue
        if ds["layout"] == "celeba" and attribute == "sex":
            raise ConfigError(f"datasets.{dataset}.group_by: sex comes from CelebA's {CELEBA_ATTRIBUTE_FILE}; "
                              f"set datasets.{dataset}.index_options.attribute_file to its path")
        raise ConfigError(f"datasets.{dataset}.group_by: the {ds['layout']!r} layout gives no {attribute!r} "
                          f"(it gives: {', '.join(sorted(given)) or 'no attributes'}); remove {attribute!r}")


# ----------------------------------------------------------------------------------------------
# identification protocols

DEFAULT_RANKS = (1, 5)
DEFAULT_FPIR_TARGETS = (0.1, 0.01)
IDENTIFICATION = "identification"
REAL_GALLERY = (REAL, REAL)


def identification_protocols(config: dict[str, Any], dataset: str) -> list[str]:
    """The dataset's protocols of kind identification (the others are verification protocols)."""
    return [p for p in config["datasets"][dataset]["protocols"] if config["protocols"][p]["kind"] == IDENTIFICATION]


def identification_comparisons(config: dict[str, Any], dataset: str, protocol: str) -> list[tuple[str, str]]:
    """(gallery variant, probe variant) of an identification protocol's comparisons: the gallery is
    enrolled unmasked, or from the real-masked photos for ``[real, real]``."""
    out: list[tuple[str, str]] = []
    for ref, probe in comparison_pairs(config, dataset, protocol):
        if ref != UNMASKED and (ref, probe) != REAL_GALLERY:
            raise ConfigError(f"protocols.{protocol}.comparisons: an identification gallery is enrolled "
                              f"unmasked, so every comparison must start with unmasked, or be [real, real] "
                              f"(a gallery of real-masked photos); got [{ref}, {probe}]")
        if (ref, probe) not in out:
            out.append((ref, probe))
    return out


def identification_probe_variants(config: dict[str, Any], dataset: str, protocol: str) -> list[str]:
    """Probe variants searched in the unmasked gallery: the probe sides of the comparisons that
    start with ``unmasked`` (``[real, real]`` has its own gallery, see real_gallery_wanted)."""
    return [probe for ref, probe in identification_comparisons(config, dataset, protocol) if ref == UNMASKED]


def real_gallery_wanted(config: dict[str, Any], dataset: str, protocol: str) -> bool:
    """Whether the protocol asks for ``[real, real]``: a gallery enrolled from real-masked photos."""
    return REAL_GALLERY in identification_comparisons(config, dataset, protocol)


def imported_score_path(template: str, dataset: str, protocol: str, comparison: str) -> str:
    """An imported model's score file: its ``scores`` template with ``{dataset}``, ``{protocol}``
    and ``{comparison}`` filled in."""
    try:
        return template.format(dataset=dataset, protocol=protocol, comparison=comparison)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"score file template {template!r} cannot be filled ({type(exc).__name__}: {exc}); it may use "
            "only {dataset}, {protocol} and {comparison} (write {{ and }} for literal braces)") from None


# ----------------------------------------------------------------------------------------------
# mask-aware ensembles

MASK_AWARE_DEFAULTS = {"weight_step": 0.05, "unmasked_tolerance": 0.002, "C": 1.0}


def check_weight_step(step: float) -> int:
    """A fusion weight grid step that divides 1 (0.05, 0.1, ...): the number of steps."""
    if not 0 < step <= 1:
        raise ValueError(f"weight_step must lie in (0, 1], got {step}")
    n = round(1.0 / step)
    if abs(n * step - 1.0) > 1e-8:
        raise ValueError(f"weight_step must divide 1 (e.g. 0.05, 0.1), got {step}")
    return n


def mask_aware_settings(spec: dict[str, Any]) -> dict[str, Any]:
    """A mask-aware ensemble's `mask_aware:` block with its defaults."""
    return {**MASK_AWARE_DEFAULTS, **(spec.get("mask_aware") or {})}


def selection_protocol(config: dict[str, Any], model: str, protocol: str) -> str:
    """The val protocol a mask-aware ensemble tested on ``protocol`` chooses its weights on: its
    `mask_aware.select_on`, else the protocol its members' scores are normalised on."""
    return mask_aware_settings(config["models"][model]).get("select_on") or normalisation_protocol(config, model, protocol)


def check_mask_aware_model(config: dict[str, Any], name: str) -> None:
    """A mask-aware ensemble: two members, no member weights, a classifier base with embeddings,
    known training datasets."""
    spec = config["models"][name]
    block = mask_aware_settings(spec)
    if len(spec["members"]) != 2:
        raise ConfigError(f"models.{name}.members: a mask-aware ensemble has two members, [full face, upper face]")
    if spec.get("member_weights") is not None:
        raise ConfigError(f"models.{name}.member_weights: a mask-aware ensemble chooses its weights on val; "
                          "remove member_weights")
    if block["base"] not in embedding_models(config):
        raise ConfigError(f"models.{name}.mask_aware.base: {block['base']!r} must name a model with embeddings "
                          f"(one of {embedding_models(config)})")
    for dataset in block["datasets"]:
        if dataset not in config["datasets"]:
            raise ConfigError(f"models.{name}.mask_aware.datasets: unknown dataset {dataset!r}")
    select = block.get("select_on")
    if select is not None:
        part = protocol_part(config, select) if select in config["protocols"] else None
        if part is None or part[1] == "test" or config["protocols"][select]["kind"] == "identification":
            raise ConfigError(f"models.{name}.mask_aware.select_on: {select!r} must name a pair protocol restricted "
                              "to the val (or train) part of a split: weights are never chosen on test pairs")
    try:
        check_weight_step(float(block["weight_step"]))
    except ValueError as exc:
        raise ConfigError(f"models.{name}.mask_aware: {exc}") from None


def check_mask_aware_selection(config: dict[str, Any], model: str, dataset: str, protocol: str) -> None:
    """The selection protocol compares unmasked with unmasked and with at least one mask type."""
    select = selection_protocol(config, model, protocol)
    comparisons = comparisons_for(config, dataset, select)
    if "unmasked-vs-unmasked" not in comparisons or not any(
            c.startswith("unmasked-vs-") and c != "unmasked-vs-unmasked" for c in comparisons):
        raise ConfigError(
            f"models.{model}: the mask-aware weights are chosen on {select!r}, which must compare "
            f"[unmasked, unmasked] and [unmasked, masked] on {dataset!r} (its comparisons: {comparisons})")
