"""Workflow stages of a projection model: read cached embeddings by split part, train the head on
train (selected on val, test never read), and project embedding shards through a trained head."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from maskbench.io.atomic import write_json, write_table
from maskbench.io.readers import load_embeddings, read_split
from maskbench.training.heads import load_head, save_head
from maskbench.io.manifests import CURVE_SCHEMA, embedding_schema
from maskbench.training.train_head import EmbeddingSet, embed_with_head, torch_session, train_projection_head

log = logging.getLogger(__name__)

__all__ = ["read_parts", "check_no_leak",
           "train_head_step", "project_embeddings"]

TRAINING_PARTS = ("train", "val")  # test is never read when training


# ---------------------------------------------------------------------------------------------
# reading


def _as_lists(embedding_paths, split_paths, datasets) -> tuple[list[dict], list[str], list[str | None]]:
    if isinstance(embedding_paths, dict):
        embedding_paths = [embedding_paths]
    if isinstance(split_paths, (str, Path)):
        split_paths = [split_paths]
    embedding_paths, split_paths = list(embedding_paths), [str(p) for p in split_paths]
    if len(embedding_paths) != len(split_paths):
        raise ValueError(f"{len(embedding_paths)} embedding groups but {len(split_paths)} split files: give one "
                         f"split per dataset, in the same order")
    if datasets is None:
        if len(embedding_paths) == 1:
            return embedding_paths, split_paths, [None]
        raise ValueError(f"{len(embedding_paths)} embedding groups: name their datasets (datasets=[...]) so that "
                         f"two datasets' people never merge")
    datasets = list(datasets)
    if len(datasets) != len(embedding_paths) or len(set(datasets)) != len(datasets):
        raise ValueError(f"datasets {datasets} must name each of the {len(embedding_paths)} embedding groups once")
    return embedding_paths, split_paths, datasets


def read_parts(embedding_paths: dict[str, list[str]] | list[dict[str, list[str]]], split_paths: str | list[str],
               parts: Sequence[str], datasets: Sequence[str] | None = None) -> dict[str, EmbeddingSet]:
    """One :class:`EmbeddingSet` per split part, each embedding file read once.

    Rows are the images of that part with an ``ok`` embedding, one per variant, sorted by image
    and variant. An image without identity is a person of its own (``image:<image_id>``), as in
    the identity split. With several datasets, image ids and identities are prefixed
    ``<dataset>/`` (``datasets``, required then) so two datasets' people never merge.
    """
    groups, splits, names = _as_lists(embedding_paths, split_paths, datasets)
    collected: dict[str, list[tuple[str, str, str, np.ndarray]]] = {p: [] for p in parts}
    dim = None
    for group, split_path, name in zip(groups, splits, names):
        where = {i: entry for i, entry in read_split(split_path).items() if entry[0] in collected}
        prefix = f"{name}/" if name is not None else ""
        for variant in sorted(group):
            vectors = load_embeddings(list(group[variant]))
            for image_id in sorted(set(vectors) & set(where)):
                vec = vectors[image_id]
                if dim is None:
                    dim = vec.shape[0]
                elif vec.shape[0] != dim:
                    raise ValueError(f"{name or 'dataset'} {variant}: embeddings of dim {vec.shape[0]}, others {dim}; "
                                     f"all must come from one base model")
                part, identity = where[image_id]
                person = identity if identity is not None else f"image:{image_id}"
                collected[part].append((prefix + image_id, variant, prefix + person, vec))
    out = {}
    for part, rows in collected.items():
        rows.sort(key=lambda r: (r[0], r[1]))
        vectors = np.stack([r[3] for r in rows]) if rows else np.empty((0, dim or 0), np.float32)
        out[part] = EmbeddingSet(vectors=vectors, image_id=[r[0] for r in rows],
                                 identity=[r[2] for r in rows], variant=[r[1] for r in rows])
    return out


def check_no_leak(split_path: str, dataset: str | None = None) -> None:
    """Refuse a split where a person has images in train and in val or test."""
    parts: dict[str, set[str]] = defaultdict(set)
    for part, identity in read_split(split_path).values():
        if identity is not None:
            parts[identity].add(part)
    for identity in sorted(parts):
        other = sorted(parts[identity] - {"train"})
        if "train" in parts[identity] and other:
            where = f" of dataset {dataset!r}" if dataset else ""
            raise ValueError(f"{split_path}: identity {identity!r}{where} is in both train and {' and '.join(other)}; "
                             f"a projection head must be trained on an identity split (no person in two parts)")


# ---------------------------------------------------------------------------------------------
# stages


def train_head_step(embeddings: list[dict[str, list[str]]], splits: list[str], datasets: list[str],
                    spec: dict[str, Any], base_model: str, seed: int, threads: int, model_out: str,
                    curve_out: str, report_out: str, score: str = "cosine",
                    base_score: str | None = None) -> dict[str, Any]:
    """Train a head on the train parts of ``datasets``, select it on their val parts (EERs under
    the head's ``score`` and its base's ``base_score``, as the tables score them), and write the
    head (safetensors), its curve (Parquet) and a JSON report; returns the report."""
    start = time.perf_counter()
    if not (len(embeddings) == len(splits) == len(datasets)):
        raise ValueError(f"give one embedding group and one split per dataset: {len(embeddings)} groups, "
                         f"{len(splits)} splits, {len(datasets)} datasets")
    for split_path, dataset in zip(splits, datasets):
        check_no_leak(split_path, dataset)
    data = read_parts(embeddings, splits, TRAINING_PARTS, datasets)
    train, val = data["train"], data["val"]
    log.info("train: %s; val: %s", train.counts(), val.counts())
    result = train_projection_head(train, val, spec, seed, threads=threads, score=score, base_score=base_score)
    meta = {**result.meta, "base_model": base_model, "datasets": list(datasets)}
    save_head(model_out, result.head, meta)
    curve = result.curve
    write_table(curve_out, pa.Table.from_pydict({c: curve[c].tolist() for c in CURVE_SCHEMA.names},
                                                schema=CURVE_SCHEMA))
    report = {
        "base_model": base_model,
        "datasets": list(datasets),
        "images": {"train": train.counts(), "val": val.counts()},
        "best_epoch": result.best_epoch,
        "val_score": result.meta["val_score"],
        "base_val_score": result.meta["base_val_score"],
        "base_val_eer": result.meta["base_val_eer"],
        "untrained_val_eer": result.meta["untrained_val_eer"],
        "best_val_eer": result.meta["best_val_eer"],
        "base_val_unmasked_eer": result.meta["base_val_unmasked_eer"],
        "best_val_unmasked_eer": result.meta["best_val_unmasked_eer"],
        "unmasked_limit": result.meta["unmasked_limit"],
        "unmasked_constraint_met": result.meta["unmasked_constraint_met"],
        "val_unmasked_pairs": {"genuine": result.meta["val_unmasked_genuine"],
                               "impostor": result.meta["val_unmasked_impostor"]},
        "val_pairs": {"genuine": result.meta["val_genuine"], "impostor": result.meta["val_impostor"]},
        "train": result.meta["train"],
        "seed": int(seed),
    }
    log.info("trained in %.1f s", time.perf_counter() - start)
    write_json(report_out, report)
    return report


def project_embeddings(base_path: str, head_path: str, out_path: str, threads: int) -> dict[str, int]:
    """Apply a trained head to a base model's embedding file; rows whose status is not ``ok`` keep their
    status with a null embedding. Returns the count of each status."""
    table = pq.read_table(base_path, columns=["image_id", "status", "embedding"])
    head, meta = load_head(head_path)
    ids = table["image_id"].to_pylist()
    statuses = table["status"].to_pylist()
    ok = [i for i, s in enumerate(statuses) if s == "ok"]
    dim_in = table.schema.field("embedding").type
    if pa.types.is_fixed_size_list(dim_in) and dim_in.list_size != head.in_dim:
        raise ValueError(f"{base_path}: embeddings of dim {dim_in.list_size}, but head {head_path} takes "
                         f"{head.in_dim} (base model {meta.get('base_model')!r})")
    vectors: list[Any] = [None] * len(ids)
    if ok:
        base = table["embedding"].to_pylist()
        missing = [ids[i] for i in ok if base[i] is None]
        if missing:
            raise ValueError(f"{base_path}: rows with status ok but no embedding, e.g. {missing[:3]}")
        x = np.asarray([base[i] for i in ok], dtype=np.float32)
        with torch_session(threads):
            projected = embed_with_head(head, x, keep_norm=True)  # an identity head gives its base back
        for k, i in enumerate(ok):
            vectors[i] = projected[k].tolist()
    out = pa.Table.from_pydict({"image_id": ids, "status": statuses, "embedding": vectors},
                               schema=embedding_schema(head.out_dim))
    write_table(out_path, out)
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    log.info("projected %d of %d rows through %s: %s", len(ok), len(ids), head_path, counts)
    return counts

