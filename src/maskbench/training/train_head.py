"""Train a projection head over cached embeddings so a person's masked and unmasked faces meet.

Batches hold P identities x K samples, half unmasked and half masked where an identity has
both, so every batch has masked-unmasked positives (an identity with one image still has its
unmasked and masked copies), and the loss sees unmasked-unmasked positives as well as
unmasked-masked ones. After every epoch the head is scored on val twice: with the masked-probe
protocol (unmasked references, masked probes) and unmasked against unmasked, genuine pairs always
of two different images. The kept epoch has the lowest masked val EER among those whose unmasked
val EER is at most the base's plus ``unmasked_tolerance`` (:mod:`maskbench.training.selection`); epoch 0 is
the untrained head, which is the base model when the head does not reduce the dimension, so the
result is never worse on val than the base, masked or unmasked (beyond the tolerance).

Runs are reproducible: a seeded sampler, seeded initialisation, torch's deterministic
algorithms and a fixed thread count.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from maskbench.evaluation import metrics
from maskbench.evaluation.scoring import pair_scores
from maskbench.training.determinism import deterministic_algorithms
from maskbench.training.heads import ProjectionHead
from maskbench.training.losses import make_loss
from maskbench.seeds import item_seed
from maskbench.training.selection import choose_epoch
from maskbench.training.specs import TRAIN_DEFAULTS, resolve_spec
from maskbench.variants import UNMASKED

log = logging.getLogger(__name__)

__all__ = ["EmbeddingSet", "TrainResult", "MaskedProbePairs", "IdentityBatchSampler",
           "TRAIN_DEFAULTS", "resolve_spec", "masked_probe_pairs", "pair_eer", "torch_session",
           "embed_with_head", "scored_rows", "train_projection_head", "unmasked_pairs"]

IMPOSTORS_PER_GENUINE = 20
MAX_VAL_GENUINE = 50_000  # a seeded subset beyond this keeps the per-epoch check to seconds
# no wall-clock time in outputs (it would change their bytes on every run): timings go to the log
CURVE_COLUMNS = ["epoch", "loss", "val_eer", "val_genuine", "val_impostor", "val_unmasked_eer"]


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class EmbeddingSet:
    """One row per (image, variant): ``vectors[i]`` is the base embedding of ``image_id[i]`` under
    ``variant[i]`` (``unmasked`` or a mask type), of person ``identity[i]``."""

    vectors: np.ndarray
    image_id: list[str]
    identity: list[str]
    variant: list[str]

    def __post_init__(self) -> None:
        self.vectors = np.ascontiguousarray(np.asarray(self.vectors, dtype=np.float32))
        self.image_id, self.identity, self.variant = list(self.image_id), list(self.identity), list(self.variant)
        n = len(self.image_id)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != n:
            raise ValueError(f"EmbeddingSet: vectors must be [N, d] with N = {n} image ids, got shape "
                             f"{self.vectors.shape}")
        if len(self.identity) != n or len(self.variant) != n:
            raise ValueError(f"EmbeddingSet: image_id, identity and variant need one entry per row; got "
                             f"{n}, {len(self.identity)}, {len(self.variant)}")
        if any(i is None for i in self.identity):
            raise ValueError("EmbeddingSet: identity is missing for some rows; give an image without an "
                             "identity one of its own (e.g. 'image:<image_id>')")
        bad = ~np.isfinite(self.vectors).all(axis=1)
        if bad.any():
            raise ValueError(f"EmbeddingSet: {int(bad.sum())} vector(s) are not finite, e.g. "
                             f"{self.image_id[int(np.flatnonzero(bad)[0])]!r}; drop them first")

    def __len__(self) -> int:
        return len(self.image_id)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def counts(self) -> dict[str, Any]:
        """Images and identities, in all and per variant (for reports)."""
        out: dict[str, Any] = {"rows": len(self), "images": len(set(self.image_id)),
                               "identities": len(set(self.identity)), "by_variant": {}}
        for v in sorted(set(self.variant)):
            rows = [i for i, x in enumerate(self.variant) if x == v]
            out["by_variant"][v] = {"images": len({self.image_id[i] for i in rows}),
                                    "identities": len({self.identity[i] for i in rows})}
        return out


@dataclass
class TrainResult:
    head: ProjectionHead
    curve: pd.DataFrame
    best_epoch: int
    meta: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# settings


@contextlib.contextmanager
def torch_session(threads: int, seed: int | None = None) -> Iterator[None]:
    """Deterministic torch for a block: ``threads`` CPU threads, deterministic algorithms and (with
    ``seed``) a seeded global generator; the caller's settings and RNG state come back after."""
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads!r}")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        with deterministic_algorithms(), torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(old_threads)


# ---------------------------------------------------------------------------------------------
# batches


class IdentityBatchSampler:
    """Seeded P x K batches: P different identities, K samples each, ``ceil(K/2)`` unmasked and
    ``floor(K/2)`` masked when the identity has both (all from one kind otherwise).

    Identities are taken in a seeded order that is reshuffled once all have been used, so each
    appears about equally often. Within an identity, samples are drawn without replacement while
    its pool lasts, then repeated.
    """

    def __init__(self, data: EmbeddingSet, identities_per_batch: int, samples_per_identity: int, seed: int):
        self.names = sorted(set(data.identity))
        if len(self.names) < 2:
            raise ValueError(f"training needs at least 2 identities, the train set has {len(self.names)}; "
                             f"add data or use a split that puts more people in train")
        index = {name: i for i, name in enumerate(self.names)}
        self.labels = np.array([index[x] for x in data.identity], dtype=np.int64)
        masked = np.array([v != UNMASKED for v in data.variant])
        order = np.argsort(self.labels, kind="stable")
        bounds = np.searchsorted(self.labels[order], np.arange(len(self.names) + 1))
        self.pools = []
        for i in range(len(self.names)):
            rows = order[bounds[i]:bounds[i + 1]]
            self.pools.append((rows[~masked[rows]], rows[masked[rows]]))
        self.p = min(int(identities_per_batch), len(self.names))
        self.k = int(samples_per_identity)
        self.rng = np.random.default_rng(item_seed(seed, "identity batches"))
        self._queue: list[int] = []

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def _identities(self) -> list[int]:
        chosen: list[int] = []
        while len(chosen) < self.p:
            if not self._queue:
                self._queue = self.rng.permutation(len(self.names)).tolist()
            candidate = self._queue.pop()
            if candidate not in chosen:
                chosen.append(candidate)
            else:  # met again after a reshuffle: keep it for a later batch
                self._queue.insert(0, candidate)
        return chosen

    def _draw(self, pool: np.ndarray, n: int) -> np.ndarray:
        if n <= pool.size:
            return self.rng.choice(pool, size=n, replace=False)
        return np.concatenate([self.rng.permutation(pool), self.rng.choice(pool, size=n - pool.size)])

    def batch(self) -> tuple[np.ndarray, np.ndarray]:
        """(row indices [P*K], labels [P*K]) of the next batch."""
        rows = []
        for ident in self._identities():
            unmasked, masked = self.pools[ident]
            if unmasked.size and masked.size:
                n_masked = self.k // 2
                rows.append(self._draw(unmasked, self.k - n_masked))
                rows.append(self._draw(masked, n_masked))
            else:
                rows.append(self._draw(unmasked if unmasked.size else masked, self.k))
        idx = np.concatenate(rows)
        return idx, self.labels[idx]


# ---------------------------------------------------------------------------------------------
# validation: masked-probe EER


@dataclass(frozen=True)
class MaskedProbePairs:
    """Row indices of val pairs: unmasked reference ``ref[j]`` against masked probe ``probe[j]``."""

    ref: np.ndarray
    probe: np.ndarray
    genuine: np.ndarray

    @property
    def n_genuine(self) -> int:
        return int(self.genuine.sum())

    @property
    def n_impostor(self) -> int:
        return int((~self.genuine).sum())


def masked_probe_pairs(data: EmbeddingSet, seed: int, impostors_per_genuine: int = IMPOSTORS_PER_GENUINE,
                       max_genuine: int = MAX_VAL_GENUINE) -> MaskedProbePairs:
    """Unmasked references against masked probes (every mask type in ``data``).

    Genuine pairs: same identity, different image (an image against its own masked copy would
    flatter the model); all of them, or a seeded ``max_genuine`` of them. Impostor pairs: a
    seeded sample without repeats of different-identity pairs, up to ``impostors_per_genuine``
    per genuine pair.
    """
    variant = np.array(data.variant, dtype=object)
    refs = np.flatnonzero(variant == UNMASKED)
    probes = np.flatnonzero(variant != UNMASKED)
    _, ident = np.unique(np.array(data.identity, dtype=object), return_inverse=True)
    _, image = np.unique(np.array(data.image_id, dtype=object), return_inverse=True)
    rng = np.random.default_rng(item_seed(seed, "val pairs"))

    ref_by_id = _group(refs, ident[refs])
    probe_by_id = _group(probes, ident[probes])
    gen_ref, gen_probe = [], []
    same_identity_pairs = 0
    for key in sorted(set(ref_by_id) & set(probe_by_id)):
        r, p = ref_by_id[key], probe_by_id[key]
        same_identity_pairs += r.size * p.size
        rr, pp = np.repeat(r, p.size), np.tile(p, r.size)
        keep = image[rr] != image[pp]
        gen_ref.append(rr[keep])
        gen_probe.append(pp[keep])
    gen_ref_a = np.concatenate(gen_ref) if gen_ref else np.empty(0, np.int64)
    gen_probe_a = np.concatenate(gen_probe) if gen_probe else np.empty(0, np.int64)
    if gen_ref_a.size == 0:
        raise ValueError("val has no genuine masked-probe pair: it needs an identity with an unmasked image "
                         "and a masked copy of another of its images (check the split's val part and the "
                         "mask variants passed)")
    if gen_ref_a.size > max_genuine:
        keep = np.sort(rng.choice(gen_ref_a.size, size=max_genuine, replace=False))
        gen_ref_a, gen_probe_a = gen_ref_a[keep], gen_probe_a[keep]

    n_different = refs.size * probes.size - same_identity_pairs
    if n_different == 0:
        raise ValueError("val has no impostor masked-probe pair: it needs at least two identities")
    want = min(int(impostors_per_genuine) * gen_ref_a.size, n_different)
    codes = _sample_different_pairs(rng, ident[refs], ident[probes], want)
    imp_ref, imp_probe = refs[codes // probes.size], probes[codes % probes.size]
    return MaskedProbePairs(
        ref=np.concatenate([gen_ref_a, imp_ref]).astype(np.int64),
        probe=np.concatenate([gen_probe_a, imp_probe]).astype(np.int64),
        genuine=np.concatenate([np.ones(gen_ref_a.size, bool), np.zeros(imp_ref.size, bool)]))


def unmasked_pairs(data: EmbeddingSet, seed: int, impostors_per_genuine: int = IMPOSTORS_PER_GENUINE,
                   max_genuine: int = MAX_VAL_GENUINE) -> MaskedProbePairs | None:
    """Unmasked against unmasked: every pair of two different unmasked images of one identity (a
    seeded ``max_genuine`` beyond that), each pair once, and a seeded sample of about
    ``impostors_per_genuine`` impostor pairs per genuine one. None when val has no genuine pair
    (no identity with two images): then the unmasked EER cannot be watched."""
    refs = np.flatnonzero(np.array(data.variant, dtype=object) == UNMASKED)
    _, ident = np.unique(np.array(data.identity, dtype=object), return_inverse=True)
    rng = np.random.default_rng(item_seed(seed, "val unmasked pairs"))
    gen_a, gen_b = [], []
    for rows in _group(refs, ident[refs]).values():
        i, j = np.triu_indices(rows.size, k=1)
        gen_a.append(rows[i])
        gen_b.append(rows[j])
    a = np.concatenate(gen_a) if gen_a else np.empty(0, np.int64)
    b = np.concatenate(gen_b) if gen_b else np.empty(0, np.int64)
    if a.size == 0:
        return None
    if a.size > max_genuine:
        keep = np.sort(rng.choice(a.size, size=max_genuine, replace=False))
        a, b = a[keep], b[keep]
    ref_ident = ident[refs]
    same = sum(int(r.size) ** 2 for r in _group(refs, ref_ident).values())
    n_ordered = refs.size * refs.size - same
    if n_ordered == 0:
        return None
    want = min(int(impostors_per_genuine) * a.size, n_ordered // 2)
    codes = _sample_different_pairs(rng, ref_ident, ref_ident, min(2 * want + 64, n_ordered))
    codes = codes[codes // refs.size < codes % refs.size]  # each unordered pair once
    if codes.size > want:
        codes = np.sort(rng.choice(codes, size=want, replace=False))
    imp_a, imp_b = refs[codes // refs.size], refs[codes % refs.size]
    return MaskedProbePairs(ref=np.concatenate([a, imp_a]).astype(np.int64),
                            probe=np.concatenate([b, imp_b]).astype(np.int64),
                            genuine=np.concatenate([np.ones(a.size, bool), np.zeros(imp_a.size, bool)]))


def _group(rows: np.ndarray, keys: np.ndarray) -> dict[int, np.ndarray]:
    order = np.argsort(keys, kind="stable")
    uniq, starts = np.unique(keys[order], return_index=True)
    return {int(k): rows[order[s:e]] for k, s, e in zip(uniq, starts, [*starts[1:], order.size])}


def _sample_different_pairs(rng: np.random.Generator, ref_ident: np.ndarray, probe_ident: np.ndarray,
                            want: int) -> np.ndarray:
    """``want`` distinct codes ``i * n_probe + j`` with ``ref_ident[i] != probe_ident[j]``, sorted."""
    n_probe = probe_ident.size
    total = ref_ident.size * n_probe
    if total <= 4_000_000:  # small: enumerate the candidates and sample exactly
        codes = np.arange(total, dtype=np.int64)
        codes = codes[ref_ident[codes // n_probe] != probe_ident[codes % n_probe]]
        return np.sort(rng.choice(codes, size=want, replace=False))
    draw = want
    while True:
        draw = min(total, int(draw * 1.25) + 64)
        codes = rng.choice(total, size=draw, replace=False)
        codes = codes[ref_ident[codes // n_probe] != probe_ident[codes % n_probe]]
        if codes.size >= want or draw == total:
            return np.sort(codes[:want])


@torch.no_grad()
def embed_with_head(head: nn.Module | None, vectors: np.ndarray, batch: int = 8192,
                    keep_norm: bool = False) -> np.ndarray:
    """L2-normalised output of ``head`` (eval mode) on ``vectors``; the normalised vectors when
    ``head`` is None (the base model). ``keep_norm``: each output row at its input row's length,
    so an identity head gives back the base embeddings themselves (and scores as its base under
    a distance, not only under cosine)."""
    x = np.asarray(vectors)
    # row lengths only where used (the per-epoch val pass of a cosine head needs none)
    norms = (np.linalg.norm(np.asarray(x, dtype=np.float64), axis=1, keepdims=True)
             if head is None or keep_norm else None)
    if head is None:
        out = x / np.maximum(norms, 1e-12)
    else:
        was_training = head.training
        head.eval()
        blocks = [head(torch.from_numpy(np.ascontiguousarray(x[s:s + batch], dtype=np.float32))).numpy()
                  for s in range(0, len(x), batch)]
        head.train(was_training)
        out = np.concatenate(blocks) if blocks else np.empty((0, head.out_dim), np.float32)
    if keep_norm:
        out = np.asarray(out, dtype=np.float64) * norms
    return np.asarray(out, dtype=np.float32)


def scored_rows(head: nn.Module | None, vectors: np.ndarray, score: str) -> np.ndarray:
    """Rows as the benchmark scores them under ``score``: unit rows for cosine; otherwise the base
    embeddings themselves, and a head's output at its input's length (as projection writes it)."""
    if score == "cosine":
        return embed_with_head(head, vectors)
    if head is None:
        return np.asarray(vectors, dtype=np.float32)
    return embed_with_head(head, vectors, keep_norm=True)


def pair_eer(embedded: np.ndarray, pairs: MaskedProbePairs, chunk: int = 200_000, score: str = "cosine") -> float:
    """EER of ``score`` scores of ``pairs`` over rows ``embedded`` (for cosine: L2-normalised rows,
    see :func:`scored_rows`); NaN when a score is not finite."""
    scores = np.empty(pairs.ref.size, dtype=np.float64)
    for s in range(0, scores.size, chunk):
        a, b = embedded[pairs.ref[s:s + chunk]], embedded[pairs.probe[s:s + chunk]]
        if score == "cosine":
            scores[s:s + chunk] = np.einsum("ij,ij->i", a.astype(np.float64), b.astype(np.float64))
        else:
            scores[s:s + chunk] = pair_scores(a, b, score)
    if not np.isfinite(scores).all():  # a diverged head: never selected, and the curve shows it
        log.warning("non-finite val scores: the head has diverged (lower train.lr)")
        return math.nan
    return metrics.eer(scores[pairs.genuine], scores[~pairs.genuine]).eer


# ---------------------------------------------------------------------------------------------
# training


def _optimizer(head: ProjectionHead, loss: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; weight decay on the residual branch's weight matrices only (not the identity-started
    skip, biases, batch norm or class centres, whose scale it would only distort)."""
    decay = [m.weight for m in head.residual if isinstance(m, nn.Linear)]
    decay_ids = {id(p) for p in decay}
    rest = [p for p in [*head.parameters(), *loss.parameters()] if id(p) not in decay_ids]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=lr)


def train_projection_head(train: EmbeddingSet, val: EmbeddingSet, spec: dict[str, Any], seed: int,
                          threads: int = 1, score: str = "cosine", base_score: str | None = None) -> TrainResult:
    """Train a :class:`ProjectionHead` on ``train`` and keep its best epoch on ``val``.

    Val EERs are those the benchmark reports: the head's output scored with ``score`` (the head's
    own), the base embeddings with ``base_score`` (default: ``score``). With one score for both,
    the untrained head (epoch 0) scores exactly as its base, and the unmasked limit is the base's
    reported val EER plus the tolerance.

    ``spec`` is a model's ``train:`` config (see :data:`TRAIN_DEFAULTS`; ``loss`` goes to
    :func:`maskbench.training.losses.make_loss`). The learning rate follows a cosine schedule to zero over
    the run. ``curve`` has one row per epoch (0 = untrained; its loss is NaN) with the mean
    training loss, the val masked-probe EER and pair counts (epoch times go to the log).
    """
    if train.dim != val.dim:
        raise ValueError(f"train embeddings have dim {train.dim}, val {val.dim}: both must come from one base model")
    cfg = resolve_spec(spec, train.dim)
    sampler = IdentityBatchSampler(train, cfg["identities_per_batch"], cfg["samples_per_identity"], seed)
    pairs = masked_probe_pairs(val, seed)
    upairs = unmasked_pairs(val, seed)
    if upairs is None:
        log.warning("val has no two unmasked images of one person: the unmasked EER is not watched, the "
                    "epoch is chosen on the masked-probe EER alone")
    n_images = len(set(train.image_id))
    batches = cfg["batches_per_epoch"] or max(math.ceil(n_images / sampler.batch_size),
                                              math.ceil(len(sampler.names) / sampler.p))
    cfg["batches_per_epoch_used"] = int(batches)
    cfg["identities_per_batch_used"] = int(sampler.p)

    with torch_session(threads, seed=item_seed(seed, "head init")):
        head = ProjectionHead(train.dim, cfg["dim"], cfg["hidden"])
        head.init_skip(train.vectors)
        loss_fn = make_loss(cfg["loss"], cfg["dim"], len(sampler.names))
        if hasattr(loss_fn, "imprint"):  # class centres start at the classes' untrained embeddings
            loss_fn.imprint(torch.from_numpy(embed_with_head(head, train.vectors)), torch.from_numpy(sampler.labels))
        optimizer = _optimizer(head, loss_fn, float(cfg["lr"]), float(cfg["weight_decay"]))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg["epochs"] * batches)
        vectors = torch.from_numpy(train.vectors)
        labels = torch.from_numpy(sampler.labels)
        bare = torch.from_numpy(np.array([v == UNMASKED for v in train.variant], dtype=bool))
        keep_weight = float(cfg["unmasked_weight"])

        start = time.perf_counter()
        base_score = base_score or score
        base_embedded = scored_rows(None, val.vectors, base_score)
        base_eer = pair_eer(base_embedded, pairs, score=base_score)
        base_unmasked = pair_eer(base_embedded, upairs, score=base_score) if upairs is not None else math.nan
        embedded = scored_rows(head, val.vectors, score)
        eer0 = pair_eer(embedded, pairs, score=score)
        unmasked0 = pair_eer(embedded, upairs, score=score) if upairs is not None else math.nan
        rows = [_row(0, math.nan, eer0, pairs, unmasked0)]
        states = {0: copy.deepcopy(head.state_dict())}
        log.info("epoch 0: val masked-probe EER %.4f (base %.4f), unmasked %.4f (base %.4f); %d genuine / %d "
                 "impostor masked-probe pairs", eer0, base_eer, unmasked0, base_unmasked, pairs.n_genuine,
                 pairs.n_impostor)
        for epoch in range(1, cfg["epochs"] + 1):
            start = time.perf_counter()
            head.train()
            loss_fn.train()
            total = 0.0
            for _ in range(batches):
                idx, _ = sampler.batch()
                index = torch.from_numpy(idx)
                out = head(vectors[index])
                loss = loss_fn(out, labels[index])
                if keep_weight > 0:
                    loss = loss + keep_weight * unmasked_similarity_drift(out, vectors[index], bare[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total += float(loss.detach())
            embedded = scored_rows(head, val.vectors, score)
            val_eer = pair_eer(embedded, pairs, score=score)
            val_unmasked = pair_eer(embedded, upairs, score=score) if upairs is not None else math.nan
            rows.append(_row(epoch, total / batches, val_eer, pairs, val_unmasked))
            states[epoch] = copy.deepcopy(head.state_dict())
            log.info("epoch %d: loss %.4f, val masked-probe EER %.4f, unmasked EER %.4f, %.1f s", epoch,
                     total / batches, val_eer, val_unmasked, time.perf_counter() - start)
        choice = choose_epoch([r["epoch"] for r in rows], [r["val_eer"] for r in rows],
                              [r["val_unmasked_eer"] for r in rows], base_unmasked, cfg["unmasked_tolerance"])
        best_epoch, best_eer = choice.epoch, float(choice.masked_eer) if choice.masked_eer is not None else math.nan
        head.load_state_dict(states[best_epoch])
        head.eval()

    curve = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    meta = {"train": cfg, "seed": int(seed), "val_score": score, "base_val_score": base_score,
            "best_epoch": int(best_epoch), "best_val_eer": float(best_eer),
            "base_val_eer": float(base_eer), "untrained_val_eer": float(eer0),
            "base_val_unmasked_eer": _or_none(base_unmasked), "best_val_unmasked_eer": _or_none(choice.unmasked_eer),
            "unmasked_limit": _or_none(choice.unmasked_limit), "unmasked_constraint_met": choice.constraint_met,
            "val_unmasked_genuine": upairs.n_genuine if upairs is not None else 0,
            "val_unmasked_impostor": upairs.n_impostor if upairs is not None else 0,
            "val_genuine": pairs.n_genuine, "val_impostor": pairs.n_impostor,
            "train_identities": len(sampler.names)}
    log.info("kept epoch %d: val masked-probe EER %.4f (base %.4f), unmasked %s (limit %s)", best_epoch, best_eer,
             base_eer, choice.unmasked_eer, choice.unmasked_limit)
    return TrainResult(head=head, curve=curve, best_epoch=int(best_epoch), meta=meta)


def unmasked_similarity_drift(out: torch.Tensor, base: torch.Tensor, bare: torch.Tensor) -> torch.Tensor:
    """Mean squared change of the cosine similarities among a batch's unmasked rows, head output
    ``out`` against the ``base`` embeddings: the part of the objective that keeps unmasked
    faces as the base model sees them (any dimension; zero with fewer than two unmasked rows)."""
    if int(bare.sum()) < 2:
        return out.new_zeros(())
    x = torch.nn.functional.normalize(base[bare], dim=1)
    y = out[bare]
    if y.shape[1] == x.shape[1]:  # same space: each unmasked face stays where the base puts it
        return (1.0 - (x * y).sum(dim=1)).mean()
    return ((y @ y.T - x @ x.T) ** 2).mean()


def _row(epoch: int, loss: float, val_eer: float, pairs: MaskedProbePairs, val_unmasked: float) -> dict[str, Any]:
    return {"epoch": epoch, "loss": loss, "val_eer": val_eer, "val_genuine": pairs.n_genuine,
            "val_impostor": pairs.n_impostor, "val_unmasked_eer": val_unmasked}


def _or_none(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None
