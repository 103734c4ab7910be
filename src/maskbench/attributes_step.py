"""Stage runners of the attribute study: config checks, splits, heads, tables and figures."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from maskbench import attributes as attr
from maskbench.atomic import atomic_path, write_json, write_table
from maskbench.config import ALL_IMAGES, UNMASKED, ConfigError, embedding_models, masks_for, trained_on
from maskbench.embed_step import load_embeddings
from maskbench.manifests import USABLE_STATUSES
from maskbench.seeds import item_seed
from maskbench.splits import DEFAULT_RATIOS, check_ratios, make_split, split_report, split_table

log = logging.getLogger(__name__)

MIXED = "mixed"  # train variant: unmasked plus every mask type of the dataset
POOLED = "masked"  # test variant reported in tables: every mask type of the dataset pooled
DEFAULT_STRATIFY = ("sex", "race", "age_group")
REPORT_LABELS = ("sex", "race", "age_group")  # label distributions in a split's report

PREDICTIONS_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("head", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("sex", pa.string()),
        pa.field("race", pa.string()),
        pa.field("age", pa.int16()),
        pa.field("label", pa.string()),  # true class (null for age)
        pa.field("predicted", pa.string()),  # predicted class (null for age)
        pa.field("confidence", pa.float32()),  # probability of the predicted class
        pa.field("predicted_age", pa.float32()),  # age estimate (age task only)
    ]
)


# ----------------------------------------------------------------------------------------------
# configuration


def split_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The `splits:` section with its defaults filled in."""
    spec = dict(config.get("splits") or {})
    return {"ratios": dict(spec.get("ratios") or DEFAULT_RATIOS),
            "stratify": list(spec.get("stratify") or DEFAULT_STRATIFY)}


CNN_ARCHS = ("dlib_resnet", "resnet50")  # the backbones maskbench.finetune can train
DLIB_BLOCKS = 14  # residual blocks of dlib's face ResNet (maskbench.dlib_resnet)
CNN_SCHEDULES = ("constant", "cosine")  # learning-rate schedules of the attribute CNN


@dataclass(frozen=True)
class CnnSpec:
    """The `attributes.cnn` training settings (what it trains on is the run's train variant).

    Plain Python, so the workflow checks it when it reads the config, before any job runs.
    """

    arch: str
    pretrained: bool = True
    weights: str | None = None  # resnet50: ImageNet .pth (default: torch's hub cache)
    input_size: int | None = None  # resnet50 only (default 224)
    epochs: int = 10
    lr: float = 1e-4
    head_lr: float | None = None  # the new task outputs (default: lr)
    weight_decay: float = 0.0
    batch_size: int = 32
    flip: bool = True
    # dlib_resnet: the stem and the first N residual blocks stay as dlib trained them; their
    # output is computed once per chip (and its mirror image) and cached, and only the later
    # blocks and the task outputs train, which makes a CPU epoch cheap (0: train every layer)
    frozen_blocks: int = 0
    patience: int | None = None  # stop after this many epochs in which no task improved on val
    # start each task output from a linear head fitted on the network's own train embeddings
    # (chosen on val, as the embedding heads), so fine-tuning starts from the linear head's
    # answer instead of random outputs; needs frozen_blocks (the embeddings come from the cache)
    linear_probe: bool = False
    # learning rates over the epochs: constant, or cosine (from lr / head_lr down to 0 at `epochs`)
    schedule: str = "constant"
    label_smoothing: float = 0.0  # cross-entropy label smoothing of the class tasks
    # per-step exponential moving average of the weights (decay, e.g. 0.99): val scores, the
    # selected epochs and the saved weights are the average's; None: the weights themselves
    ema: float | None = None

    def __post_init__(self) -> None:
        if self.arch not in CNN_ARCHS:
            raise ValueError(f"attributes.cnn key 'arch': {self.arch!r}; use one of {list(CNN_ARCHS)}")
        blocks = self.frozen_blocks
        if isinstance(blocks, bool) or not isinstance(blocks, int) or not 0 <= blocks <= DLIB_BLOCKS:
            raise ValueError(f"attributes.cnn key 'frozen_blocks': {blocks!r} must be an integer from 0 to "
                             f"{DLIB_BLOCKS} (dlib's face ResNet has {DLIB_BLOCKS} residual blocks)")
        if blocks and self.arch != "dlib_resnet":
            raise ValueError("attributes.cnn key 'frozen_blocks' applies to dlib_resnet only; drop it for "
                             f"{self.arch}")
        if self.linear_probe and not self.frozen_blocks:
            raise ValueError("attributes.cnn key 'linear_probe' needs frozen_blocks >= 1 (it reads cached features)")
        if self.patience is not None and (isinstance(self.patience, bool) or not isinstance(self.patience, int)
                                          or self.patience < 1):
            raise ValueError(f"attributes.cnn key 'patience': {self.patience!r} must be an integer >= 1")
        for key in ("pretrained", "flip", "linear_probe"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"attributes.cnn key {key!r}: {getattr(self, key)!r} must be true or false")
        for key, low in (("epochs", 1), ("batch_size", 2)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"attributes.cnn key {key!r}: {value!r} must be an integer >= {low}")
        for key in ("lr", "weight_decay"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"attributes.cnn key {key!r}: {value!r} must be a number >= 0")
        for key in ("lr", "head_lr"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
                raise ValueError(f"attributes.cnn key {key!r}: {value!r} must be a number > 0")
        if self.arch == "dlib_resnet":
            for key in ("weights", "input_size"):
                if getattr(self, key) is not None:
                    raise ValueError(f"attributes.cnn key {key!r} applies to resnet50 only; drop it for dlib_resnet")
        if self.schedule not in CNN_SCHEDULES:
            raise ValueError(f"attributes.cnn key 'schedule': {self.schedule!r}; use one of {list(CNN_SCHEDULES)}")
        ls = self.label_smoothing
        if isinstance(ls, bool) or not isinstance(ls, (int, float)) or not 0 <= ls < 1:
            raise ValueError(f"attributes.cnn key 'label_smoothing': {ls!r} must be a number in [0, 1)")
        if self.ema is not None and (isinstance(self.ema, bool) or not isinstance(self.ema, (int, float))
                                     or not 0 < self.ema < 1):
            raise ValueError(f"attributes.cnn key 'ema': {self.ema!r} must be a number in (0, 1) or null")
        size = self.input_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 32):
            raise ValueError(f"attributes.cnn key 'input_size': {size!r} must be an integer >= 32")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CnnSpec":
        """Parse the config entry, naming an unknown or missing key."""
        if not isinstance(d, dict):
            raise ValueError(f"attributes.cnn must be a mapping, not {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown attributes.cnn keys {unknown}; "
                             f"known: {sorted(known | {'train_variants', 'threads', 'splits'})}")
        if "arch" not in d:
            raise ValueError("attributes.cnn key 'arch' is missing (dlib_resnet or resnet50)")
        return cls(**d)

    def backbone_spec(self) -> dict[str, Any]:
        """The spec maskbench.backbones.build_backbone takes."""
        spec: dict[str, Any] = {"arch": self.arch, "pretrained": self.pretrained}
        if self.weights is not None and self.pretrained:
            spec["weights"] = self.weights
        if self.input_size is not None:
            spec["input_size"] = self.input_size
        return spec

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cnn_model_name(arch: str) -> str:
    """The `model` a CNN run is filed under in paths and tables (beside the embedding models)."""
    return f"cnn_{arch}"


def attribute_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The `attributes:` section with its defaults filled in; `cnn` is None without a CNN, else
    its model name, training spec, train variants (default: the heads' train variants), split
    strategies (default: the study's) and torch threads (default 1: from the config, as the
    trained bytes depend on it)."""
    spec = dict(config.get("attributes") or {})
    train = list(spec.get("train_variants") or [UNMASKED])
    cnn = spec.get("cnn")
    if cnn:
        cnn = dict(cnn)
        cnn = {"model": cnn_model_name(str(cnn.get("arch"))),
               "train_variants": list(cnn.pop("train_variants", None) or train),
               "threads": int(cnn.pop("threads", None) or 1),
               "splits": list(cnn.pop("splits", None) or spec.get("splits") or ["random", "uniform"]),
               "spec": cnn}
    return {
        "datasets": list(spec.get("datasets") or config["datasets"]),
        # models with embeddings (an ensemble or imported scores have none to train a head on)
        "models": list(spec.get("models") or embedding_models(config)),
        "splits": list(spec.get("splits") or ["random", "uniform"]),
        "train_variants": train,
        "tasks": list(spec.get("tasks") or attr.TASKS),
        "heads": list(spec.get("heads") or ["linear"]),
        "age_groups": list(spec.get("age_groups") or attr.DEFAULT_AGE_GROUPS),
        "thresholds": list(spec.get("thresholds") or attr.DEFAULT_THRESHOLDS),
        "bootstrap": int(spec.get("bootstrap", 1000)),  # resamples of the privacy table's intervals
        "cnn": cnn or None,
    }


def train_variants(config: dict[str, Any], dataset: str, train: str) -> list[str]:
    """The embedding variants a head trains (and is selected) on."""
    return [UNMASKED, *masks_for(config, dataset)] if train == MIXED else [train]


def check_attributes_config(config: dict[str, Any]) -> None:
    """Raise ConfigError naming the first reference of `splits:`/`attributes:` that does not exist."""
    try:
        check_ratios(split_settings(config)["ratios"])
    except ValueError as exc:
        raise ConfigError(f"splits.ratios: {exc}") from None
    settings = attribute_settings(config)
    for dataset in settings["datasets"]:
        if dataset not in config["datasets"]:
            raise ConfigError(f"attributes.datasets: unknown dataset {dataset!r}; known: {sorted(config['datasets'])}")
        known = {UNMASKED, MIXED, *masks_for(config, dataset)}
        cnn_variants = [("attributes.cnn.train_variants", t) for t in settings["cnn"]["train_variants"]] \
            if settings["cnn"] else []
        for key, train in [("attributes.train_variants", t) for t in settings["train_variants"]] + cnn_variants:
            if train not in known:
                raise ConfigError(
                    f"{key}: {train!r} is not a variant of dataset {dataset!r}; use one of {sorted(known)}"
                )
    for model in settings["models"]:
        if model not in config["models"]:
            raise ConfigError(f"attributes.models: unknown model {model!r}; known: {sorted(config['models'])}")
        if model not in embedding_models(config):
            raise ConfigError(f"attributes.models: {model!r} has no embeddings to train a head on; use one of "
                              f"{embedding_models(config)}")
        for dataset in settings["datasets"]:
            strategy = trained_on(config, model).get(dataset)
            if strategy == ALL_IMAGES:
                raise ConfigError(f"attributes.models: {model!r} may have seen every image of {dataset!r} "
                                  "(trained_on without a split), so no split of it tests unseen faces")
            if strategy is not None and any(s != strategy for s in settings["splits"]):
                raise ConfigError(
                    f"attributes.models: {model!r} was trained on {dataset!r} (the {strategy} split), so its "
                    f"embeddings may only be studied with attributes.splits: [{strategy}] there; other "
                    "splits would test it on images it learnt from"
                )
    if settings["cnn"]:
        try:
            CnnSpec.from_dict(settings["cnn"]["spec"])
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        extra = [s for s in settings["cnn"]["splits"] if s not in settings["splits"]]
        if extra:
            raise ConfigError(f"attributes.cnn.splits: {extra} are not among attributes.splits {settings['splits']}")
        if settings["cnn"]["model"] in settings["models"]:
            raise ConfigError(f"attributes.cnn files its runs as model {settings['cnn']['model']!r}, which "
                              f"attributes.models also names; rename that model")
    bounds = settings["age_groups"]
    if any(b >= c for b, c in zip(bounds, bounds[1:])):
        raise ConfigError(f"attributes.age_groups: upper bounds must increase strictly; got {bounds}")


# ----------------------------------------------------------------------------------------------
# inputs


def read_usable(aligned_paths: Sequence[str]) -> tuple[dict[str, str | None], int]:
    """(usable image -> identity, number of unusable images) over a dataset's aligned shards."""
    usable: dict[str, str | None] = {}
    unusable = 0
    for path in aligned_paths:
        table = pq.read_table(path, columns=["image_id", "identity", "status"])
        for image_id, identity, status in zip(*(table[c].to_pylist() for c in ("image_id", "identity", "status"))):
            if status in USABLE_STATUSES:
                usable[image_id] = identity
            else:
                unusable += 1
    return usable, unusable


def read_labels(index_path: str, bounds: Sequence[int]) -> pd.DataFrame:
    """sex, race, age and age group per image (index: image_id); missing labels stay missing."""
    frame = pq.read_table(index_path, columns=["image_id", "sex", "race", "age"]).to_pandas().set_index("image_id")
    frame["age_group"] = [None if pd.isna(a) else attr.age_group(a, bounds) for a in frame["age"]]
    return frame.sort_index()


# ----------------------------------------------------------------------------------------------
# split stage


def build_split(index_path: str, aligned_paths: Sequence[str], strategy: str, ratios: dict[str, float],
                stratify: Sequence[str], age_groups: Sequence[int], seed: int, table_path: str,
                report_path: str) -> dict[str, Any]:
    """One strategy's split of the usable aligned images, with its report."""
    identities, unusable = read_usable(aligned_paths)
    labels = read_labels(index_path, age_groups).reindex(sorted(identities))
    split = make_split(strategy, identities, labels, ratios, stratify, seed)
    report = split_report(split, identities, labels[list(REPORT_LABELS)], seed,
                          ratios if strategy != "per_identity" else None, unusable)
    write_table(table_path, split_table(split, identities))
    write_json(report_path, report)
    log.info("%s split: %s", strategy, report["sizes"])
    return report


# ----------------------------------------------------------------------------------------------
# attribute stage


def _matrix(vectors: dict[str, np.ndarray], ids: Sequence[str]) -> np.ndarray:
    if not ids:
        dim = len(next(iter(vectors.values()))) if vectors else 0
        return np.zeros((0, dim), dtype=np.float32)
    return np.stack([vectors[i] for i in ids]).astype(np.float32)


def _stack(embeddings: dict[str, dict[str, np.ndarray]], variants: Sequence[str],
           ids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Rows of every variant for the images it has (a mask may have failed on an image)."""
    blocks, row_ids = [], []
    for v in variants:
        have = [i for i in ids if i in embeddings[v]]
        blocks.append(_matrix(embeddings[v], have))
        row_ids += have
    return np.concatenate(blocks) if blocks else np.zeros((0, 0), np.float32), row_ids


def _prediction_rows(head: str, task: str, variant: str, ids: Sequence[str], labels: pd.DataFrame,
                     truth: np.ndarray, prediction: attr.Prediction) -> dict[str, list]:
    regression, n = attr.is_regression(task), len(ids)
    rows = labels.loc[list(ids)]
    return {
        "image_id": list(ids), "head": [head] * n, "task": [task] * n, "variant": [variant] * n,
        "sex": rows["sex"].tolist(), "race": rows["race"].tolist(),
        "age": [None if pd.isna(a) else int(a) for a in rows["age"]],
        "label": [None] * n if regression else [str(t) for t in truth],
        "predicted": [None] * n if regression else [str(p) for p in prediction.predicted],
        "confidence": [None] * n if regression else prediction.confidence.tolist(),
        "predicted_age": prediction.predicted.tolist() if regression else [None] * n,
    }


@dataclass
class Study:
    """What every model of one run reads: labels, the split, the paired test images, and for the
    heads the embeddings per variant (a CNN reads chips instead)."""

    labels: pd.DataFrame
    by_split: dict[str, list[str]]
    test_ids: list[str]  # test images present in every test variant
    age_groups: Sequence[int]
    embeddings: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def labelled(self, task: str, ids: Sequence[str]) -> list[str]:
        known = self.labels["age" if task == "age_group" else task].notna()
        return [i for i in ids if known.get(i, False)]

    def target(self, task: str, ids: Sequence[str]) -> np.ndarray:
        rows = self.labels.loc[list(ids)]
        return attr.task_target(task, rows["sex"], rows["race"], rows["age"], self.age_groups)

    def groups(self, ids: Sequence[str], repeat: int = 1) -> dict[str, list]:
        return {c: self.labels.loc[list(ids), c].astype(object).tolist() * repeat for c in ("sex", "race", "age_group")}


def read_split(split_path: str) -> dict[str, list[str]]:
    """part -> sorted image ids, for train, val and test."""
    splits = pq.read_table(split_path, columns=["image_id", "split"]).to_pandas()
    return {s: sorted(splits.loc[splits["split"] == s, "image_id"]) for s in ("train", "val", "test")}


def val_metric(task: str) -> str:
    """What model selection maximises (accuracy) or minimises (mae) on the val split."""
    return "mae" if attr.is_regression(task) else "accuracy"


def evaluate_variants(study: Study, head_kind: str, task: str, tested: Sequence[str],
                 predictions: dict[str, attr.Prediction], thresholds: Sequence[float],
                 columns: dict[str, list]) -> dict[str, Any]:
    """Metrics of one model on the ``tested`` images under every variant of ``predictions`` (in
    their order), plus the mask variants pooled as `masked`; their prediction rows are appended
    to ``columns`` (PREDICTIONS_SCHEMA). Heads and the CNN report through here alike."""
    classes = None if attr.is_regression(task) else attr.task_classes(task, study.age_groups)
    truth = study.target(task, tested)
    out: dict[str, Any] = {}
    pooled: list[attr.Prediction] = []
    for variant, prediction in predictions.items():
        out[variant] = attr.evaluate(task, truth, prediction, classes, study.groups(tested), thresholds)
        for name, values in _prediction_rows(head_kind, task, variant, tested, study.labels, truth,
                                             prediction).items():
            columns[name] += values
        if variant != UNMASKED:
            pooled.append(prediction)
    if pooled:
        joined = attr.Prediction(np.concatenate([p.predicted for p in pooled]),
                                 None if classes is None else np.concatenate([p.confidence for p in pooled]))
        out[POOLED] = attr.evaluate(task, np.concatenate([truth] * len(pooled)), joined, classes,
                                    study.groups(tested, len(pooled)), thresholds)
    return out


def _run_task(study: Study, head_kind: str, task: str, train_on: Sequence[str], test_on: Sequence[str],
              thresholds: Sequence[float], seed: int, columns: dict[str, list]) -> dict[str, Any]:
    """Fit one head for one task, test it on every variant and on the masks pooled."""
    x_train, rows_train = _stack(study.embeddings, train_on, study.labelled(task, study.by_split["train"]))
    x_val, rows_val = _stack(study.embeddings, train_on, study.labelled(task, study.by_split["val"]))
    head = attr.fit_head(task, x_train, study.target(task, rows_train), x_val, study.target(task, rows_val),
                         head_kind, item_seed(seed, "attributes", task, head_kind))
    tested = study.labelled(task, study.test_ids)
    predictions = {v: attr.predict(head, _matrix(study.embeddings[v], tested)) for v in test_on}
    return {"params": head.params, "val_score": head.val_score, "val_metric": val_metric(task),
            "train_rows": len(rows_train), "val_rows": len(rows_val),
            "test": evaluate_variants(study, head_kind, task, tested, predictions, thresholds, columns)}


def result_header(meta: dict[str, Any] | None, train: str, train_on: Sequence[str], test_on: Sequence[str],
                  tasks: Sequence[str], head_kinds: Sequence[str], seed: int, age_groups: Sequence[int],
                  study: Study) -> dict[str, Any]:
    """The keys every metrics file of the attribute study starts with (the tables read these)."""
    has_masks = any(v != UNMASKED for v in test_on)
    return {
        **(meta or {}), "train_variant": train, "train_on": list(train_on), "test_on": list(test_on),
        "tested_as": [*test_on, *([POOLED] if has_masks else [])], "tasks": list(tasks),
        "head_kinds": list(head_kinds), "seed": seed, "age_groups": attr.age_group_names(age_groups),
        "images": {**{s: len(v) for s, v in study.by_split.items()}, "test_paired": len(study.test_ids),
                   "test_dropped_unpaired": len(study.by_split["test"]) - len(study.test_ids)},
        "heads": {},
    }


def run_attributes(split_path: str, index_path: str, embedding_paths: dict[str, list[str]], train: str,
                   train_on: Sequence[str], test_on: Sequence[str], tasks: Sequence[str], heads: Sequence[str],
                   age_groups: Sequence[int], thresholds: Sequence[float], seed: int,
                   predictions_path: str, metrics_path: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train each head on the train split of ``train_on`` variants, select it on their val split,
    and test it on the same test images under every ``test_on`` variant (paired: only images
    embedded in every test variant are tested), plus every mask variant pooled as `masked`."""
    embeddings = {v: load_embeddings(paths) for v, paths in embedding_paths.items()}
    by_split = read_split(split_path)
    test_ids = [i for i in by_split["test"] if all(i in embeddings[v] for v in test_on)]
    study = Study(read_labels(index_path, age_groups), by_split, test_ids, age_groups, embeddings)
    result = result_header(meta, train, train_on, test_on, tasks, heads, seed, age_groups, study)
    columns: dict[str, list] = {name: [] for name in PREDICTIONS_SCHEMA.names}
    for head_kind in heads:
        result["heads"][head_kind] = {}
        for task in tasks:
            entry = _run_task(study, head_kind, task, train_on, test_on, thresholds, seed, columns)
            result["heads"][head_kind][task] = entry
            log.info("%s/%s: %s", head_kind, task, headlines(task, entry["test"]))
    write_table(predictions_path, pa.Table.from_pydict(columns, schema=PREDICTIONS_SCHEMA))
    write_json(metrics_path, result)
    return result


def headlines(task: str, tests: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """variant -> accuracy (or MAE for age), rounded, for the log."""
    return {v: _headline(task, m) for v, m in tests.items()}


def _headline(task: str, metrics: dict[str, Any]) -> float | None:
    value = metrics["mae"] if attr.is_regression(task) else metrics["accuracy"]
    return None if value is None else round(value, 4)


# ----------------------------------------------------------------------------------------------
# tables


def _metric_names(task: str) -> tuple[str, ...]:
    return ("mae", "rmse") if attr.is_regression(task) else ("accuracy", "balanced_accuracy")


def _group_order(group_by: str, per: dict[str, Any], age_groups: Sequence[str]) -> list[str]:
    """Groups in their natural order (classes as listed, age groups by age), others after."""
    known = {"sex": attr.SEX_CLASSES, "race": attr.RACE_CLASSES, "age_group": age_groups}.get(group_by, ())
    return [g for g in known if g in per] + sorted(g for g in per if g not in known)


def long_results(entries: Sequence[dict[str, str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(headline metrics, per-group metrics), one row per value, from the metrics files listed in
    ``entries`` (each with dataset, model, split, train_variant and path)."""
    rows, group_rows = [], []
    for e in entries:
        with open(e["path"], encoding="utf-8") as f:
            result = json.load(f)
        key = {"dataset": e["dataset"], "model": e["model"], "train_variant": e["train_variant"], "split": e["split"]}
        for head in result["head_kinds"]:
            for task in result["tasks"]:
                for variant in result["tested_as"]:
                    metrics = result["heads"][head][task]["test"][variant]
                    for metric in _metric_names(task):
                        rows.append({**key, "head": head, "task": task, "metric": metric,
                                     "test_variant": variant, "value": metrics[metric], "n": metrics["n"]})
                    metric = "mae" if attr.is_regression(task) else "accuracy"
                    for group_by, per in metrics["by_group"].items():
                        for group in _group_order(group_by, per, result["age_groups"]):
                            values = per[group]
                            group_rows.append({**key, "head": head, "task": task, "test_variant": variant,
                                               "group_by": group_by, "group": group, "n": values["n"],
                                               "metric": metric, "value": values[metric]})
    return pd.DataFrame(rows), pd.DataFrame(group_rows)


def _in_order(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Rows sorted by ``columns``, each in the order its values first appear (config order), tasks
    in TASKS order."""
    rank = {c: {v: k for k, v in enumerate(attr.TASKS if c == "task" else dict.fromkeys(frame[c]))} for c in columns}
    return frame.sort_values(list(columns), key=lambda col: col.map(rank[col.name]), kind="stable")


def wide_table(long: pd.DataFrame, splits: Sequence[str]) -> pd.DataFrame:
    """Rows (dataset, model, head, train variant, task, metric); columns `<test variant>/<split>`,
    split by split, unmasked then every mask pooled (`masked`) then each mask type."""
    keys = ["dataset", "model", "head", "train_variant", "task", "metric"]
    long = long.assign(column=long["test_variant"] + "/" + long["split"])
    frame = long.pivot_table(index=keys, columns="column", values="value", aggfunc="first", sort=False)
    variants = list(dict.fromkeys(long["test_variant"]))
    ordered = sorted(variants, key=lambda v: (v != UNMASKED, v != POOLED))
    columns = [f"{v}/{s}" for s in splits for v in ordered if f"{v}/{s}" in frame.columns]
    frame = _in_order(frame[columns].reset_index(), keys)
    return frame.round(6).reset_index(drop=True)


def attributes_tables(entries: Sequence[dict[str, str]], splits: Sequence[str], csv_path: str,
                      by_group_path: str) -> pd.DataFrame:
    """attributes.csv (wide) and attributes_by_group.csv (long), each with a Markdown copy."""
    from maskbench.tables import write_frame

    long, groups = long_results(entries)
    table = wide_table(long, splits)
    write_frame(table, csv_path, "attributes: sex, race, age, age group from (masked) faces", index=False)
    groups = _in_order(groups, ["dataset", "model", "head", "train_variant", "split", "task", "test_variant",
                                "group_by"]).round({"value": 6})
    write_frame(groups, by_group_path, "attributes by sex and race group", index=False)
    return table


# ----------------------------------------------------------------------------------------------
# figures

_PNG_META = {"Software": None}


def _save(fig, path: str) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=_PNG_META)
    plt.close(fig)


def attribute_figures(metrics_path: str, confusion_png: str, coverage_png: str, age_error_png: str) -> None:
    """Confusion matrices (row-normalised), accuracy-coverage curves and age error by age group of
    the first head of one metrics file, one panel or line per test variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_path, encoding="utf-8") as f:
        result = json.load(f)
    head = result["head_kinds"][0]
    tasks = result["heads"][head]
    title = f"{result.get('dataset', '')} {result.get('model', '')}, {result.get('split', '')} split, " \
            f"trained on {result['train_variant']} ({head})"
    class_tasks = [t for t in result["tasks"] if not attr.is_regression(t)]
    variants = result["tested_as"]

    fig, axes = plt.subplots(max(len(class_tasks), 1), max(len(variants), 1), squeeze=False,
                             figsize=(2.6 * max(len(variants), 1), 2.6 * max(len(class_tasks), 1)), dpi=100)
    for r, task in enumerate(class_tasks):
        for c, variant in enumerate(variants):
            m = tasks[task]["test"][variant]
            matrix = np.asarray(m["confusion"], dtype=float)
            norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
            ax = axes[r][c]
            ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
            ax.set_xticks(range(len(m["classes"])), m["classes"], rotation=90, fontsize=6)
            ax.set_yticks(range(len(m["classes"])), m["classes"], fontsize=6)
            ax.set_title(f"{task} / {variant}: {m['accuracy']:.3f}" if m["accuracy"] is not None else task, fontsize=7)
    fig.suptitle(title, fontsize=8)
    _save(fig, confusion_png)

    fig, axes = plt.subplots(1, max(len(class_tasks), 1), squeeze=False, figsize=(3.2 * max(len(class_tasks), 1), 3.0),
                             dpi=100)
    for c, task in enumerate(class_tasks):
        ax = axes[0][c]
        for variant in variants:
            curve = [p for p in tasks[task]["test"][variant]["coverage"] if p["accuracy"] is not None]
            ax.plot([p["coverage"] for p in curve], [p["accuracy"] for p in curve], marker="o", ms=3, label=variant)
        ax.set_xlabel("coverage (faces kept)")
        ax.set_ylabel("accuracy on kept faces")
        ax.set_title(task, fontsize=8)
        ax.set_xlim(0, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=8)
    _save(fig, coverage_png)

    fig, ax = plt.subplots(figsize=(6.0, 3.2), dpi=100)
    if "age" in tasks:
        names = result["age_groups"]
        width = 0.8 / max(len(variants), 1)
        for k, variant in enumerate(variants):
            per = tasks["age"]["test"][variant]["by_group"]["age_group"]
            ax.bar(np.arange(len(names)) + k * width, [per.get(n, {}).get("mae", np.nan) for n in names], width,
                   label=variant)
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
        ax.set_xlabel("true age group")
        ax.set_ylabel("age MAE (years)")
        ax.legend(fontsize=6)
    ax.set_title(title, fontsize=8)
    _save(fig, age_error_png)
