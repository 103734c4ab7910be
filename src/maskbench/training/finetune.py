"""Fine-tune a face backbone on aligned masked and unmasked chips, keeping the best val epoch.

Mask types are an augmentation: in every epoch each training image shows either its unmasked chip
or one of its masked chips, and may be mirrored, both drawn from a generator seeded by
``(seed, epoch, image)``, so a run does not depend on data order or on other images. Batches take
``samples_per_identity`` images of a person at a time, so the pair losses (supcon, triplet) always
find positives. After every epoch the validation images are scored as NIST's masked-probe setting
does (unmasked references against masked probes of other images; genuine = same identity, a seeded
sample of impostors) and unmasked against unmasked. The kept epoch has the lowest masked-probe EER
among those whose unmasked EER is at most the starting model's plus ``unmasked_tolerance``
(:mod:`maskbench.training.selection`). Epoch 0 in the curve is the starting model: a candidate when it is
the pretrained model (so fine-tuning never loses unmasked accuracy on val beyond the tolerance),
a baseline only when it is a random initialisation or a pretrained trunk under a projection drawn
at random (``dim``); the limit of the latter is the trunk's own val unmasked EER.

The result is saved as safetensors whose metadata carries everything needed to rebuild the
network (architecture, projection, preprocessing), so
:func:`maskbench.models.finetuned.load_finetuned` needs no config.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors.torch import save as save_safetensors
from torch import nn

from maskbench.io.atomic import write_bytes
from maskbench.models.backbones import Backbone, build_backbone
from maskbench.io.chips import decode_chip
from maskbench.models.dlib_resnet import resolve_device, torch_threads
from maskbench.training.determinism import deterministic_algorithms
from maskbench.training.losses import make_loss
from maskbench.evaluation.metrics import eer
from maskbench.evaluation.scoring import pair_scores
from maskbench.seeds import item_seed
from maskbench.models.finetuned import CHECKPOINT_FORMAT, with_projection
from maskbench.models.upper_face import UpperFaceBackbone, cut_fraction, with_region
from maskbench.training.selection import choose_epoch
from maskbench.training.specs import FinetuneSpec
from maskbench.variants import UNMASKED

log = logging.getLogger(__name__)

PAIR_LOSSES = ("supcon", "triplet")  # losses that need two samples of a person in a batch



# --- specification -----------------------------------------------------------------------------


# --- data --------------------------------------------------------------------------------------


@dataclass
class ChipSet:
    """Images of one split part: encoded chips (decoded per batch, to keep memory small).

    ``masked[mask][i]`` is image ``i``'s chip under that mask type, where masking succeeded.
    """

    image_ids: list[str]
    identities: list[str]
    unmasked: list[bytes]
    masked: dict[str, dict[int, bytes]] = field(default_factory=dict)
    landmarks: list[np.ndarray] | None = None  # (68, 2) in chip coordinates, for an upper-face model

    def __post_init__(self) -> None:
        if not (len(self.image_ids) == len(self.identities) == len(self.unmasked)):
            raise ValueError("ChipSet: image_ids, identities and unmasked chips differ in length")
        if self.landmarks is not None and len(self.landmarks) != len(self.image_ids):
            raise ValueError("ChipSet: one landmark array per image, or none")

    def __len__(self) -> int:
        return len(self.image_ids)

    def variants(self, i: int) -> list[str]:
        """The chips image ``i`` has: unmasked first, then its mask types in name order."""
        return [UNMASKED] + [m for m in sorted(self.masked) if i in self.masked[m]]

    def chip(self, i: int, variant: str) -> np.ndarray:
        return decode_chip(self.unmasked[i] if variant == UNMASKED else self.masked[variant][i])


def draw_variants(data: ChipSet, epoch: int, seed: int, flip: bool) -> tuple[list[str], np.ndarray]:
    """Per image: which chip it shows in this epoch and whether it is mirrored."""
    chosen, flips = [], np.zeros(len(data), dtype=bool)
    for i, image_id in enumerate(data.image_ids):
        rng = np.random.default_rng(item_seed(seed, "variant", str(epoch), image_id))
        options = data.variants(i)
        chosen.append(options[int(rng.integers(len(options)))])
        flips[i] = flip and bool(rng.random() < 0.5)
    return chosen, flips


def epoch_batches(labels: np.ndarray, epoch: int, seed: int, batch_size: int, per_identity: int) -> list[np.ndarray]:
    """Every image once, in batches built from runs of ``per_identity`` images of one person.

    Each person's images are shuffled and cut into runs; the runs are shuffled and laid end to end
    and the sequence is cut into batches, so a batch holds about ``batch_size / per_identity``
    people with several images each.
    """
    rng = np.random.default_rng(item_seed(seed, "batches", str(epoch)))
    runs = []
    for members in _groups(np.asarray(labels)).values():
        members = rng.permutation(members)
        runs += [members[k:k + per_identity] for k in range(0, len(members), per_identity)]
    order = np.concatenate([runs[k] for k in rng.permutation(len(runs))]) if runs else np.zeros(0, int)
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)]


def usable_batch(labels: np.ndarray, loss_kind: str) -> bool:
    """Whether the loss can use this batch: two samples, and for pair losses a positive and a negative."""
    if len(labels) < 2:
        return False
    if loss_kind in PAIR_LOSSES:
        distinct = len(np.unique(labels))
        return distinct < len(labels) and (loss_kind != "triplet" or distinct > 1)
    return True


@dataclass(frozen=True)
class ValPairs:
    """Masked-probe comparisons of the val part: reference image index vs probe (image, mask).

    ``genuine`` and ``impostor`` rows are (reference image index, index into ``probes``).
    """

    probes: list[tuple[int, str]]
    genuine: np.ndarray  # (G, 2): reference image index, probe index
    impostor: np.ndarray  # (I, 2)


def val_pairs(data: ChipSet, seed: int, n_impostors: int, max_genuine: int) -> ValPairs:
    """Genuine pairs: every (reference, probe) of one identity and different images (a seeded
    sample of ``max_genuine`` beyond that). Impostor pairs: ``n_impostors`` distinct pairs of
    different identities drawn without replacement (all of them when there are fewer).

    Pairs are found per identity and impostors by rejection sampling, so memory stays linear in
    the number of chips however large the val part is.
    """
    probes = [(i, m) for m in sorted(data.masked) for i in sorted(data.masked[m])]
    empty = np.zeros((0, 2), dtype=np.int64)
    if not probes or len(data) == 0:
        return ValPairs(probes, empty, empty)
    ids = np.asarray(data.identities)
    probe_image = np.array([i for i, _ in probes])
    probe_ids = ids[probe_image]
    genuine = []
    probe_groups = _groups(probe_ids)
    for identity, refs in _groups(ids).items():
        probe_idx = probe_groups.get(identity, np.zeros(0, dtype=np.int64))
        grid = np.stack(np.meshgrid(refs, probe_idx, indexing="ij"), axis=-1).reshape(-1, 2)
        genuine.append(grid[grid[:, 0] != probe_image[grid[:, 1]]])
    genuine_all = np.concatenate(genuine) if genuine else empty
    genuine_all = genuine_all[np.lexsort((genuine_all[:, 1], genuine_all[:, 0]))]
    rng = np.random.default_rng(item_seed(seed, "val_pairs"))
    if len(genuine_all) > max_genuine:
        genuine_all = genuine_all[np.sort(rng.choice(len(genuine_all), max_genuine, replace=False))]
    return ValPairs(probes, genuine_all.astype(np.int64), _impostors(ids, probe_ids, n_impostors, rng))


def unmasked_val_pairs(data: ChipSet, seed: int, n_impostors: int, max_genuine: int) -> ValPairs:
    """Unmasked against unmasked on val: rows are (image index, image index), first < second;
    every genuine pair (a seeded ``max_genuine`` beyond that) and a seeded sample of
    ``n_impostors`` impostor pairs, each unordered pair once. ``probes`` is empty."""
    empty = np.zeros((0, 2), dtype=np.int64)
    ids = np.asarray(data.identities)
    genuine = [np.stack([members[i], members[j]], axis=1)
               for members in _groups(ids).values() for i, j in [np.triu_indices(len(members), 1)]]
    genuine_all = np.concatenate(genuine).astype(np.int64) if genuine else empty
    rng = np.random.default_rng(item_seed(seed, "val_unmasked_pairs"))
    if len(genuine_all) > max_genuine:
        genuine_all = genuine_all[np.sort(rng.choice(len(genuine_all), max_genuine, replace=False))]
    impostor = _impostors(ids, ids, 2 * n_impostors + 64, rng) if len(ids) else empty
    impostor = impostor[impostor[:, 0] < impostor[:, 1]]
    if len(impostor) > n_impostors:
        impostor = impostor[np.sort(rng.choice(len(impostor), n_impostors, replace=False))]
    return ValPairs([], genuine_all, impostor.astype(np.int64))


def _groups(values: np.ndarray) -> dict[Any, np.ndarray]:
    """value -> sorted indices where it occurs (one sort, not one scan per value)."""
    order = np.argsort(values, kind="stable")
    names, starts = np.unique(values[order], return_index=True)
    return dict(zip(names.tolist(), np.split(order, starts[1:])))


def _impostors(ids: np.ndarray, probe_ids: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` distinct (reference, probe) index pairs of different identities, sorted."""
    probe_groups = _groups(probe_ids)
    same = sum(len(refs) * len(probe_groups.get(name, ())) for name, refs in _groups(ids).items())
    total = len(ids) * len(probe_ids)
    different = total - same
    if different == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if different <= n:  # every impostor pair (then the grid is small)
        cells = np.argwhere(ids[:, None] != probe_ids[None, :])
        return cells.astype(np.int64)
    draw = min(total, int(n * total / different * 1.2) + 64)
    while True:
        flat = rng.choice(total, draw, replace=False)
        refs, probes = np.divmod(flat, len(probe_ids))
        keep = ids[refs] != probe_ids[probes]
        if keep.sum() >= n or draw == total:
            pairs = np.stack([refs[keep][:n], probes[keep][:n]], axis=1)
            return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))].astype(np.int64)
        draw = min(total, 2 * draw)


# --- model -------------------------------------------------------------------------------------


def build_model(spec: FinetuneSpec, cache_dir: str | Path | None = None, pretrained: bool | None = None) -> Backbone:
    """The network to train: the backbone, plus a linear projection to ``spec.dim`` if set.

    ``pretrained=None`` follows the spec; False gives random weights (for loading a checkpoint).
    """
    backbone_spec: dict[str, Any] = {"arch": spec.arch,
                                     "pretrained": spec.pretrained if pretrained is None else pretrained}
    if spec.weights is not None:
        backbone_spec["weights"] = spec.weights
    if spec.input_size is not None:
        backbone_spec["input_size"] = spec.input_size
    if not backbone_spec["pretrained"]:
        backbone_spec.pop("weights", None)
    trunk = build_backbone(backbone_spec, cache_dir=cache_dir)
    return with_projection(trunk, spec.dim)


def projected(backbone: Backbone) -> bool:
    """Whether the network ends in a projection to ``spec.dim`` (see :func:`build_model`)."""
    return isinstance(backbone.module, nn.Sequential)


def trunk_of(backbone: Backbone) -> Backbone:
    """The trunk under a projection, seeing the same region of the chip (shares its weights)."""
    trunk = Backbone(backbone.module[0], backbone.input_size, backbone.mean, backbone.std,
                     backbone.module[1].in_features, backbone.arch)
    if isinstance(backbone, UpperFaceBackbone):
        return with_region(trunk, "upper", backbone.cut)
    return trunk


def embed_with(backbone: Backbone, chips: list[np.ndarray], batch_size: int, device: torch.device) -> np.ndarray:
    """Embeddings of decoded chips with the module in eval mode (restored to train mode after)."""
    module = backbone.module
    was_training = module.training
    module.eval()
    out = [np.zeros((0, backbone.dim), dtype=np.float32)]
    try:
        with torch.inference_mode():
            for start in range(0, len(chips), batch_size):
                x = backbone.preprocess(np.stack(chips[start:start + batch_size])).to(device)
                out.append(module(x).float().cpu().numpy())
    finally:
        module.train(was_training)
    return np.concatenate(out)


def val_eers(backbone: Backbone, data: ChipSet, pairs: ValPairs, unmasked: ValPairs, score: str,
             batch_size: int, device: torch.device) -> tuple[float | None, float | None]:
    """(masked-probe EER, unmasked EER) on the val part, every unmasked chip embedded once."""
    masked = val_eer(backbone, data, pairs, score, batch_size, device)
    if len(unmasked.genuine) == 0 or len(unmasked.impostor) == 0:
        return masked, None
    images = sorted(set(unmasked.genuine.ravel()) | set(unmasked.impostor.ravel()))
    emb = embed_with(backbone, [data.chip(i, UNMASKED) for i in images], batch_size, device)
    row = np.full(len(data), -1)
    row[images] = np.arange(len(images))
    gen = pair_scores(emb[row[unmasked.genuine[:, 0]]], emb[row[unmasked.genuine[:, 1]]], score)
    imp = pair_scores(emb[row[unmasked.impostor[:, 0]]], emb[row[unmasked.impostor[:, 1]]], score)
    if not (np.isfinite(gen).all() and np.isfinite(imp).all()):
        return masked, math.nan
    return masked, float(eer(gen, imp).eer)


def val_eer(backbone: Backbone, data: ChipSet, pairs: ValPairs, score: str, batch_size: int,
            device: torch.device) -> float | None:
    """Masked-probe EER on the val part (None when either class of pairs is empty)."""
    if len(pairs.genuine) == 0 or len(pairs.impostor) == 0:
        return None
    refs = sorted(set(pairs.genuine[:, 0]) | set(pairs.impostor[:, 0]))
    probes = sorted(set(pairs.genuine[:, 1]) | set(pairs.impostor[:, 1]))
    ref_emb = embed_with(backbone, [data.chip(i, UNMASKED) for i in refs], batch_size, device)
    probe_emb = embed_with(backbone, [data.chip(*pairs.probes[p]) for p in probes], batch_size, device)
    ref_row = np.full(len(data), -1)
    ref_row[refs] = np.arange(len(refs))
    probe_row = np.full(len(pairs.probes), -1)
    probe_row[probes] = np.arange(len(probes))

    def scores(p: np.ndarray) -> np.ndarray:
        return pair_scores(ref_emb[ref_row[p[:, 0]]], probe_emb[probe_row[p[:, 1]]], score)

    gen, imp = scores(pairs.genuine), scores(pairs.impostor)
    if not (np.isfinite(gen).all() and np.isfinite(imp).all()):
        return math.nan
    return float(eer(gen, imp).eer)


def make_optimizer(spec: FinetuneSpec, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)


@dataclass
class EpochStats:
    loss: float | None
    samples: int
    skipped_batches: int
    variants: dict[str, int]


def train_epoch(backbone: Backbone, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, data: ChipSet,
                labels: np.ndarray, spec: FinetuneSpec, epoch: int, seed: int, device: torch.device) -> EpochStats:
    """One pass over the training images; the loss is the sample-weighted mean over used batches."""
    backbone.module.train()
    loss_fn.train()
    chosen, flips = draw_variants(data, epoch, seed, spec.flip)
    total, samples, skipped = 0.0, 0, 0
    counts: dict[str, int] = {}
    for batch in epoch_batches(labels, epoch, seed, spec.batch_size, spec.samples_per_identity):
        if not usable_batch(labels[batch], spec.loss["kind"]):
            skipped += 1
            continue
        chips = np.stack([data.chip(int(i), chosen[i]) for i in batch])
        x = backbone.preprocess(chips, flips[batch]).to(device)
        y = torch.from_numpy(labels[batch]).to(device)
        loss = loss_fn(backbone.module(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(batch)
        samples += len(batch)
        for i in batch:
            counts[chosen[i]] = counts.get(chosen[i], 0) + 1
    return EpochStats(total / samples if samples else None, samples, skipped, dict(sorted(counts.items())))


# --- the run -----------------------------------------------------------------------------------


@dataclass
class FinetuneResult:
    backbone: Backbone  # the best epoch's weights, in eval mode on the CPU
    curve: list[dict[str, Any]]
    best_epoch: int
    best_val_eer: float | None
    report: dict[str, Any]


def _labels(data: ChipSet) -> tuple[np.ndarray, list[str]]:
    names = sorted(set(data.identities))
    index = {name: k for k, name in enumerate(names)}
    return np.array([index[n] for n in data.identities], dtype=np.int64), names


def _state_copy(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


@contextlib.contextmanager
def deterministic_torch(dev: torch.device) -> Iterator[None]:
    """Deterministic algorithms for a block. On the CPU the same seed and thread count give the
    same bytes; on a GPU a few backward kernels (e.g. adaptive pooling) have no deterministic
    version, so they only warn there and GPU runs may differ in the last bits."""
    if dev.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    with deterministic_algorithms(warn_only=dev.type == "cuda"):
        yield


def finetune(train: ChipSet, val: ChipSet, spec: FinetuneSpec | dict[str, Any], seed: int, threads: int = 1,
             cache_dir: str | Path | None = None, device: str | torch.device = "auto") -> FinetuneResult:
    """Train on ``train``, select the epoch on ``val``; the test part is never passed in."""
    spec = spec if isinstance(spec, FinetuneSpec) else FinetuneSpec.from_dict(spec)
    labels, names = _labels(train)
    if len(names) < 2:
        raise ValueError(f"fine-tuning needs at least 2 identities in the train part, found {len(names)}")
    dev = resolve_device(device)
    with torch_threads(threads), torch.random.fork_rng(devices=[]), deterministic_torch(dev):
        torch.manual_seed(item_seed(seed, "init"))  # random init, projection and loss parameters
        backbone = build_model(spec, cache_dir)
        if spec.region != "full":
            if train.landmarks is None:
                raise ValueError("an upper-face model (region: upper) needs the train chips' landmarks")
            chip_size = decode_chip(train.unmasked[0]).shape[0]
            backbone = with_region(backbone, spec.region, cut_fraction(train.landmarks, chip_size))
        loss_fn = make_loss(spec.loss, backbone.dim, len(names))
        backbone.module.to(dev)
        loss_fn.to(dev)
        params = list(backbone.module.parameters()) + list(loss_fn.parameters())
        optimizer = make_optimizer(spec, params)
        pairs = val_pairs(val, seed, spec.val_impostors, spec.val_max_genuine)
        if len(pairs.genuine) == 0 or len(pairs.impostor) == 0:
            log.warning("val part has %d genuine and %d impostor masked-probe pairs: no EER, the last epoch is kept",
                        len(pairs.genuine), len(pairs.impostor))
        upairs = unmasked_val_pairs(val, seed, spec.val_impostors, spec.val_max_genuine)
        start_eer, start_unmasked = val_eers(backbone, val, pairs, upairs, spec.val_score, spec.batch_size, dev)
        counts = {"val_genuine": len(pairs.genuine), "val_impostor": len(pairs.impostor)}
        curve = [{"epoch": 0, "loss": None, "val_eer": start_eer, **counts, "val_unmasked_eer": start_unmasked}]
        log.info("epoch 0 (start): val EER %s, unmasked %s", start_eer, start_unmasked)
        start_is_base = spec.pretrained and not projected(backbone)
        if start_is_base:
            limit_base = start_unmasked
        elif spec.pretrained:  # the pretrained trunk, without the projection drawn at random on top of it
            limit_base = val_eers(trunk_of(backbone), val, pairs, upairs, spec.val_score, spec.batch_size, dev)[1]
            log.info("pretrained trunk without its projection: val unmasked EER %s", limit_base)
        else:
            limit_base = None
        kept: tuple[int, dict[str, torch.Tensor]] | None = (0, _state_copy(backbone.module)) if start_is_base else None
        epochs = []
        for epoch in range(1, spec.epochs + 1):
            started = time.perf_counter()
            stats = train_epoch(backbone, loss_fn, optimizer, train, labels, spec, epoch, seed, dev)
            if stats.samples == 0:
                raise ValueError(
                    f"epoch {epoch}: no batch the {spec.loss['kind']!r} loss can use; the train part needs people "
                    f"with at least 2 images (samples_per_identity >= 2) for pair losses"
                )
            value, unmasked_value = val_eers(backbone, val, pairs, upairs, spec.val_score, spec.batch_size, dev)
            seconds = time.perf_counter() - started
            curve.append({"epoch": epoch, "loss": stats.loss, "val_eer": value, **counts,
                          "val_unmasked_eer": unmasked_value})
            epochs.append({"epoch": epoch, "samples": stats.samples, "skipped_batches": stats.skipped_batches,
                           "variants": stats.variants})
            log.info("epoch %d: loss %.5f, val EER %s, unmasked %s, %.1f s", epoch, stats.loss, value,
                     unmasked_value, seconds)
            # the choice over epochs so far is the previous one or this epoch: one saved state suffices
            choice = _choose(curve, spec, limit_base, start_is_base)
            if kept is None or choice.epoch == epoch:
                kept = (epoch, _state_copy(backbone.module))
    assert kept is not None
    choice = _choose(curve, spec, limit_base, start_is_base)
    best_epoch = kept[0]
    assert choice.epoch == best_epoch
    backbone.module.load_state_dict(kept[1])
    backbone.module.to("cpu").eval()
    best_eer = curve[best_epoch]["val_eer"]
    best_eer = best_eer if best_eer is not None and math.isfinite(best_eer) else None
    report = {
        "spec": spec.to_dict(),
        "seed": seed,
        "arch": spec.arch,
        "dim": backbone.dim,
        "device": dev.type,
        "train": {"images": len(train), "identities": len(names),
                  "masked_chips": {m: len(v) for m, v in sorted(train.masked.items())}},
        "val": {"images": len(val), "identities": len(set(val.identities)),
                "masked_chips": {m: len(v) for m, v in sorted(val.masked.items())},
                "genuine_pairs": int(len(pairs.genuine)), "impostor_pairs": int(len(pairs.impostor)),
                "score": spec.val_score},
        "start_val_eer": start_eer,
        "start_val_unmasked_eer": start_unmasked,
        "best_val_unmasked_eer": curve[best_epoch]["val_unmasked_eer"],
        "unmasked_limit": choice.unmasked_limit,
        "start_is_candidate": start_is_base,
        "unmasked_constraint_met": choice.constraint_met,
        "val_unmasked": {"genuine_pairs": int(len(upairs.genuine)), "impostor_pairs": int(len(upairs.impostor))},
        "best_epoch": best_epoch,
        "best_val_eer": best_eer,
        "epochs": epochs,
    }
    return FinetuneResult(backbone, curve, best_epoch, best_eer, report)


def _choose(curve: list[dict[str, Any]], spec: FinetuneSpec, base_unmasked: float | None, start_is_base: bool):
    """The epoch rule on the curve so far: epoch 0 competes only as the pretrained model itself (not
    a random initialisation, nor a pretrained trunk under a random projection); with no
    masked-probe EER at all (val too small) the latest epoch within the unmasked limit is kept.
    Either way the choice after each epoch is that epoch or the one chosen before, so the one
    saved state is always the chosen one."""
    candidates = [r["epoch"] > 0 or start_is_base for r in curve]
    masked = [r["val_eer"] for r in curve]
    ranked = not any(v is not None and math.isfinite(v) for v, c in zip(masked, candidates) if c)
    if ranked:
        masked = [-float(r["epoch"]) for r in curve]  # a rank, not an EER: the latest ranks best
    choice = choose_epoch([r["epoch"] for r in curve], masked, [r["val_unmasked_eer"] for r in curve],
                          base_unmasked, spec.unmasked_tolerance, candidates)
    return replace(choice, masked_eer=None) if ranked else choice


# --- checkpoint ----------------------------------------------------------------------------------


def checkpoint_metadata(result: FinetuneResult, spec: FinetuneSpec, seed: int) -> dict[str, Any]:
    b = result.backbone
    return {
        "format": CHECKPOINT_FORMAT,
        "arch": b.arch,
        "dim": b.dim,
        "projection": b.dim if isinstance(b.module, nn.Sequential) else None,
        "input_size": b.input_size,
        "mean": list(b.mean),
        "std": list(b.std),
        "spec": spec.to_dict(),
        "seed": seed,
        "best_epoch": result.best_epoch,
        "best_val_eer": result.best_val_eer,
        "region": spec.region,
        "cut": b.cut if isinstance(b, UpperFaceBackbone) else None,
    }


def checkpoint_bytes(module: nn.Module, metadata: dict[str, Any]) -> bytes:
    """safetensors bytes; the metadata is one sorted JSON string (safetensors keeps no key order)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    return save_safetensors(tensors, metadata={"maskbench": json.dumps(metadata, sort_keys=True)})


def save_checkpoint(path: str | Path, result: FinetuneResult, spec: FinetuneSpec, seed: int) -> None:
    write_bytes(path, checkpoint_bytes(result.backbone.module, checkpoint_metadata(result, spec, seed)))
