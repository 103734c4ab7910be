"""Mask-aware fusion: a full-face and an upper-face model, weighted per pair by how masked the probe is.

A full-face model is best on bare faces and hurt by a mask; an upper-face model never sees the
mask but has less face to go on. An ensemble with ``mask_aware:`` fuses its two members
``[full, upper]`` (z-normalised with their val scores, as :mod:`maskbench.evaluation.fusion` does) as

    s = w * z_full + (1 - w) * z_upper,   w = (1 - p) * w_unmasked + p * w_masked,

where p is the probe's calibrated P(masked) from :mod:`maskbench.evaluation.mask_classifier`. The two
weights are chosen on val identities only, on a grid: ``w_unmasked`` gives the lowest unmasked
val EER, then ``w_masked`` the lowest mean masked-probe val EER (over the mask types) among the
weights whose unmasked val EER is at most the full-face member's plus a tolerance (default
0.002). ``w_masked = w_unmasked`` always qualifies, so a choice always exists and the fused model
never gives away unmasked accuracy on val.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from maskbench.io.atomic import write_json, write_table
from maskbench.io.readers import load_embeddings
from maskbench.evaluation.fusion import FusionError, reference_moments, zscore
from maskbench.io.manifests import SCORES_SCHEMA, UNMASKED_VARIANT
from maskbench.evaluation.mask_classifier import (
    MaskClassifier,
    fit_mask_classifier,
    load_mask_classifier,
)
from maskbench.evaluation.metrics import eer, with_failures_to_enrol
from maskbench.config import check_weight_step

log = logging.getLogger(__name__)

__all__ = [
    "ValComparison",
    "WeightChoice",
    "choose_weights",
    "fuse_mask_aware_step",
    "mask_aware_fuse",
    "probe_probabilities",
    "probe_weight",
    "select_weights_step",
    "train_mask_classifier_step",
]

NO_PROBABILITY = "no_mask_probability"
"""Status of a pair whose probe the classifier's base model could not embed (p unknown)."""


# ---------------------------------------------------------------------------------------------
# the fusion rule and the choice of its weights


def probe_weight(p_masked: np.ndarray, w_masked: float, w_unmasked: float) -> np.ndarray:
    """The full-face weight of each pair from its probe's P(masked)."""
    p = np.asarray(p_masked, dtype=np.float64)
    return (1.0 - p) * w_unmasked + p * w_masked


def mask_aware_fuse(z_full: np.ndarray, z_upper: np.ndarray, p_masked: np.ndarray, w_masked: float,
                    w_unmasked: float) -> np.ndarray:
    """w * z_full + (1 - w) * z_upper per pair (inputs already z-normalised); NaN stays NaN."""
    for name, w in (("w_masked", w_masked), ("w_unmasked", w_unmasked)):
        if not 0.0 <= w <= 1.0:
            raise FusionError(f"{name} must lie in [0, 1], got {w}")
    w = probe_weight(p_masked, w_masked, w_unmasked)
    return w * np.asarray(z_full, dtype=np.float64) + (1.0 - w) * np.asarray(z_upper, dtype=np.float64)


@dataclass(frozen=True)
class ValComparison:
    """One val comparison's pairs: both members' z-scores, the probe's P(masked), the labels."""

    name: str
    z_full: np.ndarray
    z_upper: np.ndarray
    p_masked: np.ndarray
    genuine: np.ndarray

    def eer(self, w_masked: float, w_unmasked: float) -> float:
        """EER of the fused scores, a pair a member could not score counted as a failure to enrol
        (as the metrics' ``eer_with_fte``): a comparison whose genuine pairs mostly failed must not
        look good to the weight search by their absence."""
        fused = mask_aware_fuse(self.z_full, self.z_upper, self.p_masked, w_masked, w_unmasked)
        ok = np.isfinite(fused)
        gen = np.asarray(self.genuine, dtype=bool)
        if not (ok & gen).any() or not (ok & ~gen).any():
            raise FusionError(f"val comparison {self.name}: {int((ok & gen).sum())} genuine and "
                              f"{int((ok & ~gen).sum())} impostor pairs scored by both members; an EER needs both")
        genuine, impostor = with_failures_to_enrol(fused[ok & gen], fused[ok & ~gen], int((~ok & gen).sum()),
                                                   int((~ok & ~gen).sum()))
        return eer(genuine, impostor).eer


@dataclass(frozen=True)
class WeightChoice:
    w_masked: float
    w_unmasked: float
    val_masked_eer: float            # mean over the masked comparisons, at the chosen weights
    val_unmasked_eer: float
    val_masked_eers: dict[str, float]
    full_val_unmasked_eer: float     # the full-face member alone (w = 1)
    full_val_masked_eer: float
    upper_val_masked_eer: float      # the upper-face member alone (w = 0)
    unmasked_limit: float
    grid_step: float


def _grid(step: float) -> np.ndarray:
    n = check_weight_step(step)
    return np.round(np.linspace(0.0, 1.0, n + 1), 10)


def choose_weights(unmasked: ValComparison, masked: Sequence[ValComparison], step: float = 0.05,
                   tolerance: float = 0.002) -> WeightChoice:
    """Two grid searches on val. ``w_unmasked``: the full-face weight with the lowest unmasked val
    EER (ties to the higher weight, nearer the member that is best on bare faces). ``w_masked``:
    the lowest mean masked val EER whose unmasked val EER stays at most the full-face member's +
    ``tolerance`` (ties to the higher weight). A joint search would let w_unmasked follow noise in
    the masked EERs it barely moves (masked probes have p near 1)."""
    if not masked:
        raise ValueError("choosing mask-aware weights needs at least one masked-probe val comparison")
    grid = _grid(step)
    full_unmasked = unmasked.eer(1.0, 1.0)
    limit = full_unmasked + tolerance
    wu = float(min(grid, key=lambda w: (unmasked.eer(w, w), -w)))
    best: tuple[tuple[float, float], float, float, dict[str, float], float] | None = None
    for wm in grid:
        u = unmasked.eer(wm, wu)
        if u > limit + 1e-12:
            continue
        per_mask = {c.name: c.eer(wm, wu) for c in masked}
        key = (float(np.mean(list(per_mask.values()))), -wm)
        if best is None or key < best[0]:
            best = (key, float(wm), wu, per_mask, u)
    assert best is not None  # w_masked = w_unmasked: at most the full-face member's unmasked EER
    _, wm, wu, per_mask, u = best
    return WeightChoice(
        w_masked=wm, w_unmasked=wu, val_masked_eer=float(np.mean(list(per_mask.values()))), val_unmasked_eer=float(u),
        val_masked_eers=per_mask, full_val_unmasked_eer=float(full_unmasked),
        full_val_masked_eer=float(np.mean([c.eer(1.0, 1.0) for c in masked])),
        upper_val_masked_eer=float(np.mean([c.eer(0.0, 0.0) for c in masked])),
        unmasked_limit=float(limit), grid_step=float(step))


# ---------------------------------------------------------------------------------------------
# workflow stages


def _labelled_part(variants: dict[str, list[str]], split_path: str, part: str,
                   prefix: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    split = pq.read_table(split_path, columns=["image_id", "split"]).to_pylist()
    keep = {r["image_id"] for r in split if r["split"] == part}
    ids, rows, labels = [], [], []
    for variant in sorted(variants):
        vectors = load_embeddings(list(variants[variant]))
        for image_id in sorted(set(vectors) & keep):
            ids.append(f"{prefix}{image_id}:{variant}")
            rows.append(vectors[image_id])
            labels.append(variant != UNMASKED_VARIANT)
    if not rows:
        raise ValueError(f"{split_path}: no embedded image in the {part} part")
    return ids, np.stack(rows), np.asarray(labels, dtype=bool)


def real_mask_rates(classifier: MaskClassifier, real_embeddings: dict[str, list[str]],
                    splits: dict[str, str]) -> dict[str, dict[str, float | int]]:
    """Per dataset with photos of real masks: how many of its train and val people's real-masked
    photos the classifier calls masked (it learnt on synthetic masks only; test is never read)."""
    out = {}
    for dataset in sorted(real_embeddings):
        split = pq.read_table(splits[dataset], columns=["image_id", "split"]).to_pylist()
        keep = {r["image_id"] for r in split if r["split"] in ("train", "val")}
        vectors = load_embeddings(list(real_embeddings[dataset]))
        ids = sorted(set(vectors) & keep)
        if not ids:
            out[dataset] = {"photos": 0}
            continue
        p = classifier.probability(np.stack([vectors[i] for i in ids]))
        out[dataset] = {"photos": len(ids), "masked_called_masked": float(np.mean(p >= classifier.threshold)),
                        "mean_p_masked": float(np.mean(p))}
    return out


def train_mask_classifier_step(embeddings: dict[str, dict[str, list[str]]], splits: dict[str, str], c: float,
                               base_model: str, out_path: str,
                               real_embeddings: dict[str, list[str]] | None = None) -> MaskClassifier:
    """Fit the mask classifier on the train parts of the datasets' identity splits (bare vs every
    masked variant given), calibrate it on their val parts, and write it; test is never read.
    ``embeddings`` maps dataset -> variant -> embedding files; ``splits`` maps dataset -> split;
    ``real_embeddings`` (dataset -> files of its real-masked photos) are only checked, never learnt."""
    parts: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {"train": ([], []), "val": ([], [])}
    for dataset in sorted(embeddings):
        if dataset not in splits:
            raise ValueError(f"no split given for dataset {dataset!r}")
        variants = embeddings[dataset]
        if UNMASKED_VARIANT not in variants or len(variants) < 2:
            raise ValueError(f"{dataset}: the mask classifier needs unmasked and masked embeddings, got {sorted(variants)}")
        for part, (xs, ys) in parts.items():
            _, x, y = _labelled_part(embeddings[dataset], splits[dataset], part, f"{dataset}/")
            xs.append(x)
            ys.append(y)
    train_x, train_y = np.concatenate(parts["train"][0]), np.concatenate(parts["train"][1])
    val_x, val_y = np.concatenate(parts["val"][0]), np.concatenate(parts["val"][1])
    fitted = fit_mask_classifier(train_x, train_y, val_x, val_y, c=c)
    report = {**fitted.report, "base_model": base_model, "datasets": sorted(embeddings)}
    if real_embeddings:
        report["real"] = real_mask_rates(fitted, real_embeddings, splits)
    classifier = MaskClassifier(mean=fitted.mean, scale=fitted.scale, coef=fitted.coef, intercept=fitted.intercept,
                                calibration=fitted.calibration, threshold=fitted.threshold, report=report)
    classifier.save(out_path)
    log.info("mask classifier on %s: val %s", base_model, report["val"])
    return classifier


def probe_probabilities(classifier: MaskClassifier, embedding_paths: Sequence[str]) -> dict[str, float]:
    """image_id -> P(masked) for every embedded image of these files (one variant)."""
    vectors = load_embeddings(list(embedding_paths))
    if not vectors:
        return {}
    ids = sorted(vectors)
    p = classifier.probability(np.stack([vectors[i] for i in ids]))
    return dict(zip(ids, p.tolist()))


def _read_scores(path: str) -> pa.Table:
    return pq.read_table(path)


def _ok(table: pa.Table) -> np.ndarray:
    scores = np.asarray(table["score"].to_numpy(zero_copy_only=False), dtype=float)
    ok = np.asarray(table["status"].to_pylist()) == "ok"
    return np.where(ok, scores, np.nan)


def _same_pairs(tables: Sequence[pa.Table], paths: Sequence[str]) -> None:
    keys = ("pair_id", "ref_image", "probe_image", "genuine")
    for path, table in zip(paths[1:], tables[1:]):
        if any(table[k].to_pylist() != tables[0][k].to_pylist() for k in keys):
            raise FusionError(f"{path} does not score the same pairs as {paths[0]}; the members of a mask-aware "
                              "ensemble must score one pairs manifest")


def _member_z(paths: Sequence[str], reference_paths: Sequence[str]) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    if len(paths) != 2 or len(reference_paths) != 2:
        raise FusionError("a mask-aware ensemble fuses two members, [full face, upper face]")
    tables = [_read_scores(p) for p in paths]
    _same_pairs(tables, paths)
    refs = [reference_moments(_ok(_read_scores(p)), p) for p in reference_paths]
    return tables[0], zscore(_ok(tables[0]), refs[0]), zscore(_ok(tables[1]), refs[1])


def _probe_p(table: pa.Table, probabilities: dict[str, float]) -> np.ndarray:
    return np.asarray([probabilities.get(i, np.nan) for i in table["probe_image"].to_pylist()], dtype=np.float64)


def probe_variant(comparison: str) -> str:
    parts = comparison.split("-vs-")
    if len(parts) != 2:
        raise ValueError(f"{comparison!r} is not a comparison name <ref>-vs-<probe>")
    return parts[1]


def select_weights_step(member_scores: dict[str, list[str]], reference_paths: list[str], classifier_path: str,
                        probe_embeddings: dict[str, list[str]], out_path: str, step: float,
                        tolerance: float) -> WeightChoice:
    """Choose the weights on the val comparisons ``{comparison: [full, upper] score paths}``
    (``unmasked-vs-unmasked`` and at least one masked probe) and write them with their val EERs."""
    classifier = load_mask_classifier(classifier_path)
    unmasked, masked = None, []
    for comparison in sorted(member_scores):
        ref, probe = comparison.split("-vs-")
        if ref != UNMASKED_VARIANT:
            continue
        table, z_full, z_upper = _member_z(member_scores[comparison], reference_paths)
        p = _probe_p(table, probe_probabilities(classifier, probe_embeddings[probe]))
        # a probe the base model could not embed counts as its variant says (bare or masked)
        item = ValComparison(comparison, z_full, z_upper, np.nan_to_num(p, nan=0.0) if probe == UNMASKED_VARIANT else p,
                             np.asarray(table["genuine"].to_pylist(), dtype=bool))
        if probe == UNMASKED_VARIANT:
            unmasked = item
        else:
            masked.append(item)
    if unmasked is None:
        raise ValueError(f"choosing mask-aware weights needs val scores of unmasked-vs-unmasked; got {sorted(member_scores)}")
    masked = [ValComparison(c.name, c.z_full, c.z_upper, np.nan_to_num(c.p_masked, nan=1.0), c.genuine) for c in masked]
    choice = choose_weights(unmasked, masked, step=step, tolerance=tolerance)
    mean_p = {c.name: float(np.mean(c.p_masked)) for c in [unmasked, *masked]}
    write_json(out_path, {**asdict(choice), "val_mean_p_masked": mean_p,
                          "val_pairs": {c.name: int(c.genuine.size) for c in [unmasked, *masked]}})
    log.info("mask-aware weights: %s", choice)
    return choice


def fuse_mask_aware_step(member_paths: list[str], members: list[str], reference_paths: list[str],
                         weights_path: str, classifier_path: str, probe_embedding_paths: list[str],
                         out_path: str) -> dict[str, int]:
    """Fuse one comparison's member scores with the chosen weights; a pair a member could not
    score keeps ``missing_member_score``, one whose probe has no P(masked) gets ``no_mask_probability``."""
    with open(weights_path, encoding="utf-8") as f:
        weights = json.load(f)
    table, z_full, z_upper = _member_z(member_paths, reference_paths)
    p = _probe_p(table, probe_probabilities(load_mask_classifier(classifier_path), probe_embedding_paths))
    fused = mask_aware_fuse(z_full, z_upper, p, weights["w_masked"], weights["w_unmasked"])
    scored = np.isfinite(z_full) & np.isfinite(z_upper)
    ok = scored & np.isfinite(p)
    status = np.where(ok, "ok", np.where(scored, NO_PROBABILITY, "missing_member_score"))
    out = pa.Table.from_pydict(
        {"pair_id": table["pair_id"], "ref_image": table["ref_image"], "probe_image": table["probe_image"],
         "genuine": table["genuine"], "fold": table["fold"],
         "score": pa.array(np.where(ok, fused, 0.0), mask=~ok), "status": status.tolist()},
        schema=SCORES_SCHEMA)
    write_table(out_path, out)
    counts = {"pairs": int(ok.size), "fused": int(ok.sum()), "missing_member_score": int((~scored).sum()),
              NO_PROBABILITY: int((scored & ~ok).sum())}
    log.info("mask-aware fusion of %s (w_masked %s, w_unmasked %s): %s", ", ".join(members), weights["w_masked"],
             weights["w_unmasked"], counts)
    return counts


# ---------------------------------------------------------------------------------------------
# configuration


