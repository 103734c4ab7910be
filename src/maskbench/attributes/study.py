"""What every model of the attribute study reads and reports through: labels, the split, the
paired test images, and one evaluation of predictions per variant (heads and the CNN alike)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from maskbench.attributes import heads as attr
from maskbench.attributes.labels import read_labels  # noqa: F401  (the study's reader of labels)
from maskbench.attributes.settings import POOLED
from maskbench.config import UNMASKED

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

def chance_level(study: Study, task: str) -> dict[str, float] | None:
    """What a head must beat: the train part's most frequent class (its median age for age)
    answered for every paired test face, scored as the heads are (masks change nothing here)."""
    train = study.labelled(task, study.by_split["train"])
    tested = study.labelled(task, study.test_ids)
    if not train or not tested:
        return None
    truth, known = study.target(task, tested), study.target(task, train)
    if attr.is_regression(task):
        error = np.asarray(truth, float) - float(np.median(known))
        return {"mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error ** 2).mean()))}
    values, counts = np.unique(known, return_counts=True)
    majority = values[int(np.argmax(counts))]  # ties: the first class in sorted order
    present = np.unique(truth)
    return {"accuracy": float(np.mean(truth == majority)),
            "balanced_accuracy": float((majority in present) / len(present))}


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

def headlines(task: str, tests: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """variant -> accuracy (or MAE for age), rounded, for the log."""
    return {v: _headline(task, m) for v, m in tests.items()}


def _headline(task: str, metrics: dict[str, Any]) -> float | None:
    value = metrics["mae"] if attr.is_regression(task) else metrics["accuracy"]
    return None if value is None else round(value, 4)
