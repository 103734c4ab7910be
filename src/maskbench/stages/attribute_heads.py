"""Heads on embeddings compared in one table: which head, on which part of the face, reads most.

Rows: head (linear, MLP, ordinal for age and age group) x features (the model's embedding of the
whole chip; dlib's embedding of the upper face, the chip blanked below the nose as
:mod:`maskbench.models.upper_face` does) x train -> test variant; columns: accuracy of sex, race and age
group and the age MAE. Every head is chosen on the val split under its train variant, as the
attribute study's heads are; test faces are those with every feature set under every variant
(paired), masked test = every mask type pooled.

The upper-face embeddings are computed once per dataset and variant (the cut line from the train
chips' landmarks) and written as embedding shards, so any head can read them.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pandas as pd

from maskbench.attributes import heads as attr
from maskbench.io.atomic import write_json
from maskbench.attributes.ordinal import ORDINAL, ORDINAL_TASKS, fit_ordinal_head
from maskbench.attributes.settings import POOLED
from maskbench.attributes.study import Study, read_labels
from maskbench.io.readers import load_embeddings, split_parts
from maskbench.config import UNMASKED
from maskbench.seeds import item_seed

log = logging.getLogger(__name__)

FULL, UPPER = "full", "upper"
TEST_VARIANTS = (UNMASKED, POOLED)
METRIC = {"sex": "accuracy", "race": "accuracy", "age": "mae", "age_group": "accuracy"}


# --- the comparison ------------------------------------------------------------------------------


def _fit(kind: str, task: str, x_train, y_train, x_val, y_val, age_groups, seed) -> attr.Head:
    if kind == ORDINAL:
        return fit_ordinal_head(task, x_train, y_train, x_val, y_val, age_groups, seed)
    return attr.fit_head(task, x_train, y_train, x_val, y_val, kind, seed)


def _stack(embeddings: dict[str, dict[str, np.ndarray]], variants: Sequence[str], ids: Sequence[str]):
    """Rows of every (variant, image) embedded, variant by variant, and the image of each row."""
    rows = [(v, i) for v in variants for i in ids if i in embeddings[v]]
    if not rows:
        raise attr.TaskError(f"no embedding of {len(ids)} images under {list(variants)}")
    return np.stack([embeddings[v][i] for v, i in rows]), [i for _, i in rows]


def _score(task: str, truth: np.ndarray, predicted: np.ndarray) -> float:
    if attr.is_regression(task):
        return float(np.mean(np.abs(predicted - truth.astype(np.float64))))
    return float(np.mean(predicted == truth))


def compare_heads(split_path: str, index_path: str, features: dict[str, dict[str, list[str]]],
                  train_variants: dict[str, Sequence[str]], masks: Sequence[str], tasks: Sequence[str],
                  heads: Sequence[str], age_groups: Sequence[int], seed: int, out_path: str,
                  meta: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per head x feature set x train variant x test variant (unmasked, masks pooled) with
    each task's test score; written as JSON (``rows`` plus the counts behind them).

    ``features``: feature set -> variant -> embedding shards; ``train_variants``: train variant
    name -> the variants it trains on."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # small fits: spinning BLAS threads on a busy machine slow them many-fold
        return _compare(split_path, index_path, features, train_variants, masks, tasks, heads, age_groups, seed,
                        out_path, meta)


def _compare(split_path, index_path, features, train_variants, masks, tasks, heads, age_groups, seed, out_path,
             meta) -> list[dict[str, Any]]:
    variants = [UNMASKED, *masks]
    embeddings = {name: {v: load_embeddings(list(paths[v])) for v in variants} for name, paths in features.items()}
    by_split = split_parts(split_path)
    test_ids = [i for i in by_split["test"] if all(i in e[v] for e in embeddings.values() for v in variants)]
    study = Study(read_labels(index_path, age_groups), by_split, test_ids, age_groups)
    rows = []
    for kind in heads:
        for name, emb in embeddings.items():
            for train, train_on in train_variants.items():
                row_key = {**(meta or {}), "head": kind, "features": name, "train_variant": train}
                scores: dict[str, dict[str, Any]] = {v: {} for v in TEST_VARIANTS}
                for task in tasks:
                    if kind == ORDINAL and task not in ORDINAL_TASKS:
                        continue
                    x_train, r_train = _stack(emb, train_on, study.labelled(task, by_split["train"]))
                    x_val, r_val = _stack(emb, train_on, study.labelled(task, by_split["val"]))
                    head = _fit(kind, task, x_train, study.target(task, r_train), x_val, study.target(task, r_val),
                                age_groups, item_seed(seed, "attributes_heads", task, kind))
                    tested = study.labelled(task, test_ids)
                    truth = study.target(task, tested)
                    scores[UNMASKED][task] = _score(task, truth, attr.predict(head, np.stack(
                        [emb[UNMASKED][i] for i in tested])).predicted)
                    pooled = np.concatenate([attr.predict(head, np.stack([emb[m][i] for i in tested])).predicted
                                             for m in masks]) if masks else np.zeros(0)
                    scores[POOLED][task] = _score(task, np.concatenate([truth] * len(masks)), pooled) if masks else None
                for test in TEST_VARIANTS if masks else (UNMASKED,):
                    # faces scored: the pooled row scores every test image once per mask type
                    faces = len(test_ids) * (len(masks) if test == POOLED else 1)
                    rows.append({**row_key, "test_variant": test, "n": faces,
                                 **{t: scores[test].get(t) for t in tasks}})
                log.info("%s on %s, trained %s: %s", kind, name, train, scores)
    write_json(out_path, {**(meta or {}), "test_images": len(test_ids), "rows": rows})
    return rows


def heads_table(paths: Sequence[str], csv_path: str) -> pd.DataFrame:
    """attributes_heads.csv (+ .md): the rows of every comparison, columns per task."""
    import json

    from maskbench.reporting.tables import write_frame

    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            rows.extend(json.load(f)["rows"])
    frame = pd.DataFrame(rows)
    order = [c for c in ("dataset", "model", "split", "head", "features", "train_variant", "test_variant", "n")
             if c in frame.columns]
    tasks = [t for t in attr.TASKS if t in frame.columns]
    frame = frame[order + tasks].rename(columns={t: f"{t} {METRIC[t]}" for t in tasks}).round(6)
    write_frame(frame, csv_path, "attribute heads on embeddings: whole chip vs upper face (test score per task; "
                                 "accuracy, age MAE in years)", index=False)
    return frame
