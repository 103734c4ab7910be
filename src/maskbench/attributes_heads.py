"""Heads on embeddings compared in one table: which head, on which part of the face, reads most.

Rows: head (linear, MLP, ordinal for age and age group) x features (the model's embedding of the
whole chip; dlib's embedding of the upper face, the chip blanked below the nose as
:mod:`maskbench.upper_face` does) x train -> test variant; columns: accuracy of sex, race and age
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
import pyarrow as pa

from maskbench import attributes as attr
from maskbench.atomic import write_json, write_table
from maskbench.attributes_ordinal import ORDINAL, ORDINAL_TASKS, fit_ordinal_head
from maskbench.attributes_step import POOLED, Study, read_labels, read_split
from maskbench.config import UNMASKED
from maskbench.embed_step import load_embeddings
from maskbench.seeds import item_seed

log = logging.getLogger(__name__)

HEAD_KINDS = ("linear", "mlp", ORDINAL)
FULL, UPPER = "full", "upper"
TEST_VARIANTS = (UNMASKED, POOLED)
METRIC = {"sex": "accuracy", "race": "accuracy", "age": "mae", "age_group": "accuracy"}


def heads_settings(attributes: dict[str, Any]) -> dict[str, Any]:
    """Splits and heads of the comparison from the filled-in `attributes:` settings: the CNN's
    splits when there is a CNN (the study's targets), else the study's first split."""
    cnn = attributes.get("cnn")
    return {"splits": list(cnn["splits"]) if cnn else list(attributes["splits"][:1]),
            "heads": list(HEAD_KINDS)}


# --- upper-face embeddings -----------------------------------------------------------------------


EMBEDDING_SCHEMA = pa.schema([("image_id", pa.string()), ("status", pa.string()),
                              ("embedding", pa.list_(pa.float32(), 128))])


def upper_face_embeddings(aligned_paths: Sequence[str], masked_paths: Sequence[str], split_path: str, out_path: str,
                          threads: int = 1, batch_size: int = 64, cache_dir: str | None = None) -> dict[str, Any]:
    """dlib's embedding of every chip of one variant (``masked_paths`` empty: the unmasked chips)
    blanked below the nose line, which is placed from the train images' landmarks."""
    from maskbench.backbones import build_backbone
    from maskbench.chips import decode_chip
    from maskbench.embed import BackboneEmbedder
    from maskbench.finetune_step import read_chips, read_landmarks
    from maskbench.upper_face import cut_fraction, with_region

    by_split = read_split(split_path)
    wanted = {i for ids in by_split.values() for i in ids}
    landmarks = read_landmarks(list(aligned_paths), set(by_split["train"]))
    if masked_paths:
        _, masked = read_chips(list(aligned_paths), {"mask": list(masked_paths)}, wanted)
        chips = masked["mask"]
    else:
        chips, _ = read_chips(list(aligned_paths), {}, wanted)
    if not chips:
        raise ValueError(f"no usable chip in {list(masked_paths) or list(aligned_paths)}: re-run align or mask")
    chip_size = decode_chip(next(iter(chips.values()))).shape[0]
    cut = cut_fraction(landmarks.values(), chip_size)
    trunk = build_backbone({"arch": "dlib_resnet"}, cache_dir=cache_dir)
    embedder = BackboneEmbedder(with_region(trunk, UPPER, cut), batch_size=batch_size, threads=threads)
    ids = sorted(chips)
    vectors = [np.zeros((0, 128), np.float32)]
    for start in range(0, len(ids), 256):
        vectors.append(embedder.embed(np.stack([decode_chip(chips[i]) for i in ids[start:start + 256]])))
    matrix = np.concatenate(vectors)
    table = pa.Table.from_pydict({"image_id": ids, "status": ["ok"] * len(ids),
                                  "embedding": [row.tolist() for row in matrix]}, schema=EMBEDDING_SCHEMA)
    write_table(out_path, table)
    log.info("upper-face embeddings: %d chips, cut at %.3f of the chip height", len(ids), cut)
    return {"chips": len(ids), "cut": cut}


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
    by_split = read_split(split_path)
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
                    rows.append({**row_key, "test_variant": test, "n": len(test_ids),
                                 **{t: scores[test].get(t) for t in tasks}})
                log.info("%s on %s, trained %s: %s", kind, name, train, scores)
    write_json(out_path, {**(meta or {}), "test_images": len(test_ids), "rows": rows})
    return rows


def heads_table(paths: Sequence[str], csv_path: str) -> pd.DataFrame:
    """attributes_heads.csv (+ .md): the rows of every comparison, columns per task."""
    import json

    from maskbench.tables import write_frame

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
