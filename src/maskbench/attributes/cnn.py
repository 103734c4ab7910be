"""A CNN fine-tuned on aligned chips to predict sex, race, age and age group (AJCAI 2021's model).

One backbone from :mod:`maskbench.models.backbones` (torchvision's ResNet-50 from ImageNet weights, as in
the paper, or dlib's face ResNet) with one linear output per task: cross-entropy over the classes
of sex, race and age group, L1 on the standardised age. Images missing a label still train the
other tasks.

Training chips are drawn as the fine-tuning for verification draws them
(:func:`maskbench.training.finetune.draw_variants`, seeded per epoch and image): in a mixed run each image
shows its unmasked chip or one of its masked chips; a run on one variant always shows that one.
After every epoch each task is scored on the validation chips (accuracy, or MAE for age) and keeps
the weights of its own best epoch, as each embedding head is selected on val for its own task.
Epoch 0, the untrained output layers, is not a candidate, unless ``linear_probe`` set them to
linear heads fitted on the starting network's embeddings (then fine-tuning is kept only where it
beats them on val).

The CPU setting (``frozen_blocks``, dlib's ResNet): the stem and the first residual blocks keep
dlib's weights; their output for every train chip, each mask type and its mirror image, is
computed once and cached (float16), and the epochs run only the later blocks, so an epoch costs a
fraction of a full pass. The test part never reaches training:
:func:`train_attribute_cnn` takes the train and val parts only.

The checkpoint is safetensors holding the weights of every selected epoch (``epoch_<n>.<name>``)
and metadata that rebuild the network, so :func:`load_attribute_cnn` needs no config.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from torch import nn

from maskbench.attributes import heads as attr
from maskbench.io.atomic import write_bytes
from maskbench.io.checkpoints import read_checkpoint_metadata
from maskbench.attributes.settings import CnnSpec
from maskbench.models.backbones import Backbone, build_backbone
from maskbench.io.chips import decode_chip
from maskbench.models.dlib_resnet import DlibResNet, resolve_device, torch_threads
from maskbench.variants import UNMASKED
from maskbench.training.finetune import ChipSet, _state_copy, deterministic_torch, draw_variants, epoch_batches
from maskbench.seeds import item_seed

log = logging.getLogger(__name__)

CNN_HEAD = "cnn"  # the head kind of CNN runs in metrics files and tables
CHECKPOINT_FORMAT = "maskbench.attribute_cnn/2"  # 2: feature standardisation buffers
IGNORE = -100  # class target of an image without that label


# --- targets -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskCoding:
    """Labels <-> network outputs: class indices per classification task, standardised age."""

    tasks: tuple[str, ...]
    classes: dict[str, list[str]]  # classification tasks only
    age_mean: float = 0.0
    age_std: float = 1.0

    @classmethod
    def fit(cls, tasks: Sequence[str], age_groups: Sequence[int], train_labels: dict[str, np.ndarray]) -> "TaskCoding":
        """Class lists from the task definitions; the age scale from the train images' ages."""
        classes: dict[str, list[str]] = {}
        age_mean, age_std = 0.0, 1.0
        for task in tasks:
            values = train_labels[task]
            known = _known(task, values)
            if not known.any():
                raise attr.TaskError(f"task {task!r}: no image of the train split has this label")
            if attr.is_regression(task):
                ages = values[known].astype(np.float64)
                age_mean, age_std = float(ages.mean()), float(max(ages.std(), 1.0))
                continue
            classes[task] = attr.task_classes(task, age_groups)
            unknown = sorted({str(v) for v in values[known]} - set(classes[task]))
            if unknown:
                raise attr.TaskError(f"task {task!r}: labels {unknown} are not among its classes {classes[task]}")
            if len(set(values[known].tolist())) < 2:
                raise attr.TaskError(f"task {task!r}: the train split has fewer than 2 classes")
        return cls(tuple(tasks), classes, age_mean, age_std)

    def outputs(self) -> dict[str, int]:
        return {t: 1 if attr.is_regression(t) else len(self.classes[t]) for t in self.tasks}

    def encode(self, task: str, values: np.ndarray) -> torch.Tensor:
        """Targets of one task: class indices (IGNORE where unlabelled) or standardised ages (NaN)."""
        known = _known(task, values)
        if attr.is_regression(task):
            ages = np.full(len(values), np.nan)
            ages[known] = (values[known].astype(np.float64) - self.age_mean) / self.age_std
            return torch.from_numpy(ages.astype(np.float32))
        position = {c: k for k, c in enumerate(self.classes[task])}
        return torch.tensor([position[v] if k else IGNORE for v, k in zip(values, known)], dtype=torch.int64)

    def decode(self, task: str, out: np.ndarray) -> attr.Prediction:
        """Network outputs -> predicted class and its softmax probability, or age in years."""
        if attr.is_regression(task):
            return attr.Prediction(out[:, 0].astype(np.float64) * self.age_std + self.age_mean, None)
        proba = torch.softmax(torch.from_numpy(out).double(), dim=1).numpy()
        best = proba.argmax(axis=1)
        labels = np.asarray(self.classes[task], dtype=object)[best]
        return attr.Prediction(labels, proba[np.arange(len(out)), best].astype(np.float64))

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": list(self.tasks), "classes": self.classes, "age_mean": self.age_mean, "age_std": self.age_std}


def _known(task: str, values: np.ndarray) -> np.ndarray:
    """Where an image has the task's label (None or NaN mark a missing one)."""
    return np.array([v is not None and not (isinstance(v, float) and math.isnan(v)) for v in values], dtype=bool)


def task_loss(task: str, out: torch.Tensor, target: torch.Tensor,
              label_smoothing: float = 0.0) -> tuple[torch.Tensor | None, int]:
    """(mean loss over the labelled images of a batch, their number); None when it has none."""
    keep = ~torch.isnan(target) if attr.is_regression(task) else target != IGNORE
    n = int(keep.sum())
    if n == 0:
        return None, 0
    if attr.is_regression(task):
        return F.l1_loss(out[keep, 0], target[keep]), n
    return F.cross_entropy(out[keep], target[keep], label_smoothing=label_smoothing), n


# --- data ----------------------------------------------------------------------------------------


@dataclass
class LabelledChips:
    """Chips to score (PNG bytes, one row per image and variant) with their labels per task."""

    image_ids: list[str]
    variants: list[str]
    chips: list[bytes]
    labels: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.chips)

    def decode(self, k: int) -> np.ndarray:
        try:
            return decode_chip(self.chips[k])
        except ValueError as exc:
            raise ValueError(f"{self.variants[k]} chip of {self.image_ids[k]}: {exc}; re-run the stage "
                             f"that wrote it (align or mask)") from None


# --- model ---------------------------------------------------------------------------------------


class AttributeNet(nn.Module):
    """A backbone's feature with one linear output per task.

    ``frozen_blocks`` (dlib's ResNet only): the stem and the first N residual blocks are frozen;
    :meth:`frozen_part` computes their output, which a training run caches, and
    :meth:`from_frozen` runs the rest. ``forward`` is the two in turn, the same function."""

    def __init__(self, trunk: nn.Module, dim: int, outputs: dict[str, int], frozen_blocks: int = 0):
        super().__init__()
        if frozen_blocks and not isinstance(trunk, DlibResNet):
            raise ValueError(f"frozen_blocks applies to dlib's face ResNet only, not {type(trunk).__name__}")
        self.trunk = trunk
        self.frozen_blocks = frozen_blocks
        self.heads = nn.ModuleDict({task: nn.Linear(dim, n) for task, n in outputs.items()})
        # fixed standardisation of the feature before the outputs (identity unless a linear
        # probe set it from the train embeddings, as its StandardScaler)
        self.register_buffer("feature_mean", torch.zeros(dim))
        self.register_buffer("feature_std", torch.ones(dim))
        if frozen_blocks:
            for module in (trunk.conv0, trunk.affine0, *trunk.blocks[:frozen_blocks]):
                module.requires_grad_(False)

    def frozen_part(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed chips -> the output of the frozen blocks (as DlibResNet.forward computes it)."""
        t = self.trunk
        x = F.max_pool2d(F.relu(t.affine0(t.conv0(x))), 3, 2)
        return t.blocks[: self.frozen_blocks](x)

    def embed_frozen(self, features: torch.Tensor) -> torch.Tensor:
        """Frozen-block outputs -> the trunk's feature (dlib's 128-d descriptor), through the blocks that train."""
        t = self.trunk
        return t.fc(t.blocks[self.frozen_blocks:](features).mean(dim=(2, 3)))

    def from_frozen(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Frozen-block outputs -> task outputs."""
        return self.outputs(self.embed_frozen(features))

    def outputs(self, feature: torch.Tensor) -> dict[str, torch.Tensor]:
        feature = (feature - self.feature_mean) / self.feature_std
        return {task: head(feature) for task, head in self.heads.items()}

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.trunk.parameters() if p.requires_grad]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.frozen_blocks:
            return self.from_frozen(self.frozen_part(x))
        return self.outputs(self.trunk(x))


def build_network(spec: CnnSpec, coding: TaskCoding, cache_dir: str | Path | None = None,
                  pretrained: bool | None = None) -> Backbone:
    """The backbone (its preprocessing kept) with the task outputs on top, as one Backbone record.

    ``pretrained=False`` gives random weights (to load a checkpoint into)."""
    backbone_spec = spec.backbone_spec()
    if pretrained is False:
        backbone_spec = {k: v for k, v in backbone_spec.items() if k != "weights"} | {"pretrained": False}
    trunk = build_backbone(backbone_spec, cache_dir=cache_dir)
    net = AttributeNet(trunk.module, trunk.dim, coding.outputs(), spec.frozen_blocks)
    return Backbone(net, trunk.input_size, trunk.mean, trunk.std, trunk.dim, trunk.arch)


def network_outputs(network: Backbone, data: LabelledChips, batch_size: int,
                    device: torch.device, mirrored: bool = False) -> dict[str, np.ndarray]:
    """task -> raw outputs (N x classes, or N x 1) for every row of ``data``, in eval mode;
    ``mirrored``: the mean of the outputs on each chip and on its mirror image."""
    module = network.module

    def batches():
        for start in range(0, len(data), batch_size):
            chips = np.stack([data.decode(k) for k in range(start, min(start + batch_size, len(data)))])
            outputs = module(network.preprocess(chips).to(device))
            if mirrored:
                outputs = _mean_outputs(outputs, module(network.preprocess(chips, np.ones(len(chips), bool)).to(device)))
            yield outputs

    return _eval_outputs(module, batches)


def _mean_outputs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The mean of two task -> output dicts (a chip's outputs and its mirror image's)."""
    return {task: (a[task] + b[task]) / 2 for task in a}


def _eval_outputs(module, batches) -> dict[str, np.ndarray]:
    """task -> the concatenated outputs of ``batches()`` (a generator of task -> tensor dicts) run
    in eval and inference mode, the module's training mode restored after."""
    was_training = module.training
    module.eval()
    parts: dict[str, list[np.ndarray]] = {t: [] for t in module.heads}
    try:
        with torch.inference_mode():
            for outputs in batches():
                for task, out in outputs.items():
                    parts[task].append(out.float().cpu().numpy())
    finally:
        module.train(was_training)
    return {t: np.concatenate(p) if p else np.zeros((0, module.heads[t].out_features), np.float32)
            for t, p in parts.items()}


def val_scores(coding: TaskCoding, outputs: dict[str, np.ndarray],
               labels: dict[str, np.ndarray]) -> dict[str, float | None]:
    """Accuracy (classes) or MAE (age) per task over the labelled val rows (None without any)."""
    scores: dict[str, float | None] = {}
    for task in coding.tasks:
        known = _known(task, labels[task])
        if not known.any():
            scores[task] = None
            continue
        predicted = coding.decode(task, outputs[task][known]).predicted
        truth = labels[task][known]
        if attr.is_regression(task):
            error = np.abs(predicted - truth.astype(np.float64))
            scores[task] = float(error.mean()) if np.isfinite(error).all() else math.nan
        else:
            scores[task] = float(np.mean(predicted == truth))
    return scores


def _better(task: str, score: float | None, best: float | None) -> bool:
    """Whether ``score`` beats ``best`` (ties keep the earlier epoch; NaN never wins; without a
    val score the later epoch wins)."""
    if score is None:
        return True
    if math.isnan(score):
        return False
    if best is None or math.isnan(best):
        return True
    return score < best if attr.is_regression(task) else score > best


@dataclass
class FeatureCache:
    """The frozen blocks' output for every chip a draw can pick: per (variant, mirrored) a tensor
    with one row per image that has that variant (``rows[variant][image] -> row``)."""

    rows: dict[str, dict[int, int]]
    features: dict[tuple[str, bool], torch.Tensor]
    chips: int  # chips run through the frozen blocks
    seconds: float  # how long that took (for timing reports only)

    def batch(self, batch: np.ndarray, chosen: Sequence[str], flips: np.ndarray) -> torch.Tensor:
        return torch.stack([self.features[(chosen[i], bool(flips[i]))][self.rows[chosen[i]][int(i)]]
                            for i in batch]).float()

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.features.values())


def cache_features(network: Backbone, items: Sequence[tuple[str, Any]], decode, mirrored: bool, batch_size: int,
                   device: torch.device, dtype: torch.dtype = torch.float16) -> FeatureCache:
    """Run the frozen blocks once over ``items`` ((variant, key) pairs; ``decode(variant, key)``
    gives the chip), and over their mirror images too when ``mirrored``."""
    module = network.module
    started = time.perf_counter()
    rows: dict[str, dict[Any, int]] = {}
    parts: dict[tuple[str, bool], list[torch.Tensor]] = {}
    by_variant: dict[str, list[Any]] = {}
    for variant, key in items:
        by_variant.setdefault(variant, []).append(key)
    count = 0
    with torch.inference_mode():
        for variant, keys in by_variant.items():
            rows[variant] = {key: r for r, key in enumerate(keys)}
            for flip in (False, True) if mirrored else (False,):
                out = parts.setdefault((variant, flip), [])
                for start in range(0, len(keys), batch_size):
                    chunk = keys[start:start + batch_size]
                    chips = np.stack([decode(variant, key) for key in chunk])
                    x = network.preprocess(chips, np.full(len(chunk), flip)).to(device)
                    out.append(module.frozen_part(x).to("cpu", dtype))
                    count += len(chunk)
    features = {k: torch.cat(v) for k, v in parts.items()}
    return FeatureCache(rows, features, count, time.perf_counter() - started)


def train_cache(network: Backbone, data: ChipSet, spec: CnnSpec, device: torch.device) -> FeatureCache:
    """The frozen blocks' output for every train chip (each variant, mirrored too with ``flip``)."""
    items = [(v, i) for i in range(len(data)) for v in data.variants(i)]
    return cache_features(network, items, lambda v, i: data.chip(i, v), spec.flip, spec.batch_size, device)


def cached_outputs(network: Backbone, cache: FeatureCache, items: Sequence[tuple[str, Any]], batch_size: int,
                   device: torch.device, mirrored: bool = False) -> dict[str, np.ndarray]:
    """task -> outputs for ``items`` ((variant, key) pairs cached unmirrored, and mirrored too
    with ``mirrored``), in their order and in eval mode: what ``network_outputs`` gives on the
    chips themselves."""
    module = network.module

    def batches():
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            x = torch.stack([cache.features[(v, False)][cache.rows[v][key]] for v, key in chunk])
            outputs = module.from_frozen(x.float().to(device))
            if mirrored:
                x = torch.stack([cache.features[(v, True)][cache.rows[v][key]] for v, key in chunk])
                outputs = _mean_outputs(outputs, module.from_frozen(x.float().to(device)))
            yield outputs

    return _eval_outputs(module, batches)


def cached_embeddings(network: Backbone, cache: FeatureCache, items: Sequence[tuple[str, Any]], batch_size: int,
                      device: torch.device) -> np.ndarray:
    """The trunk's feature (before the task outputs) for ``items`` cached unmirrored, in eval mode."""
    module = network.module
    was_training = module.training
    module.eval()
    parts = []
    try:
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                chunk = items[start:start + batch_size]
                x = torch.stack([cache.features[(v, False)][cache.rows[v][key]] for v, key in chunk])
                parts.append(module.embed_frozen(x.float().to(device)).float().cpu().numpy())
    finally:
        module.train(was_training)
    return np.concatenate(parts) if parts else np.zeros((0, network.dim), np.float32)


# the strengths the linear embedding head tries (chosen on val), so epoch 0 is that head's choice
PROBE_C = attr.LOGISTIC_C  # logistic regression
PROBE_ALPHA = attr.RIDGE_ALPHA  # ridge (age)
PROBE_ITERATIONS = 200  # a starting point for fine-tuning need not converge fully


def fit_probe(task: str, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> attr.Head:
    """A standardised logistic regression (ridge for age) per strength, the best on val kept
    (ties: the stronger); the iteration cap keeps it to seconds on 10^5 rows."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    regression = attr.is_regression(task)
    if not regression and len(set(y.tolist())) < 2:
        raise attr.TaskError(f"task {task!r}: the train split has fewer than 2 classes")
    best: attr.Head | None = None
    for value in PROBE_ALPHA if regression else PROBE_C:
        model = make_pipeline(StandardScaler(), Ridge(alpha=value) if regression
                              else LogisticRegression(C=value, max_iter=PROBE_ITERATIONS))
        # one BLAS thread: on a busy machine spinning BLAS threads slowed these small fits 100-fold
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, y.astype(np.float64) if regression else y)
        if len(y_val) == 0:
            score = math.nan
        elif regression:
            score = float(np.mean(np.abs(model.predict(x_val) - y_val.astype(np.float64))))
        else:
            score = float(np.mean(model.predict(x_val) == y_val))
        if best is None or (score < best.val_score if regression else score > best.val_score):
            best = attr.Head(task, "linear", model, {"alpha" if regression else "C": value}, score,
                             None if regression else [str(c) for c in model.classes_])
        if len(y_val) == 0:
            break
    assert best is not None
    return best


def probe_heads(network: Backbone, coding: TaskCoding, cache: FeatureCache, train: ChipSet,
                train_labels: dict[str, np.ndarray], vcache: FeatureCache, val: LabelledChips, batch_size: int,
                device: torch.device, seed: int) -> dict[str, dict[str, Any]]:
    """Set each task output to the linear head (maskbench.attributes.heads.fit_head, chosen on val)
    fitted on the network's embeddings of every train chip; returns each head's choice."""
    items = [(v, i) for i in range(len(train)) for v in train.variants(i)]
    x = cached_embeddings(network, cache, items, batch_size, device)
    val_items = [(val.variants[k], k) for k in range(len(val))]
    x_val = cached_embeddings(network, vcache, val_items, batch_size, device)
    rows = np.array([i for _, i in items], dtype=np.int64)
    chosen = {}
    standardised: tuple[np.ndarray, np.ndarray] | None = None
    for task in coding.tasks:
        y = train_labels[task][rows]
        known, known_val = _known(task, y), _known(task, val.labels[task])
        head = fit_probe(task, x[known], y[known], x_val[known_val], val.labels[task][known_val])
        scaler, model = head.model[0], head.model[-1]
        if not standardised:  # every task's scaler saw the same rows when every label is known
            with torch.no_grad():
                network.module.feature_mean.copy_(torch.from_numpy(scaler.mean_))
                network.module.feature_std.copy_(torch.from_numpy(scaler.scale_))
            standardised = (scaler.mean_, scaler.scale_)
        # in the network's standardisation (the first task's; the same rows give the same one)
        coef = np.atleast_2d(model.coef_) * standardised[1] / scaler.scale_
        intercept = np.atleast_1d(model.intercept_) - (np.atleast_2d(model.coef_) / scaler.scale_) @ \
            (scaler.mean_ - standardised[0])
        layer = network.module.heads[task]
        weight = np.zeros((layer.out_features, coef.shape[1]))
        bias = np.zeros(layer.out_features)
        if attr.is_regression(task):  # the output is the standardised age
            weight[0], bias[0] = coef[0] / coding.age_std, (intercept[0] - coding.age_mean) / coding.age_std
        else:
            position = {c: k for k, c in enumerate(coding.classes[task])}
            bias[:] = -30.0  # a class absent from train: never predicted until training says so
            classes = [str(c) for c in model.classes_]
            if len(coef) == 1:  # binary: logits (0, z) give softmax = sigmoid(z)
                bias[position[classes[0]]] = 0.0
                weight[position[classes[1]]], bias[position[classes[1]]] = coef[0], intercept[0]
            else:
                for k, c in enumerate(classes):
                    weight[position[c]], bias[position[c]] = coef[k], intercept[k]
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(weight))
            layer.bias.copy_(torch.from_numpy(bias))
        chosen[task] = {"params": head.params, "val_score": head.val_score}
    return chosen


def val_cache(network: Backbone, data: LabelledChips, batch_size: int, device: torch.device,
              mirrored: bool = False) -> FeatureCache:
    """The frozen blocks' output for the val rows, in float32 (so val scores equal the full
    network's on the chips), and for their mirror images with ``mirrored``; rows keep ``data``'s
    order within each variant."""
    items = [(data.variants[k], k) for k in range(len(data))]
    return cache_features(network, items, lambda v, k: data.decode(k), mirrored, batch_size, device, torch.float32)


def train_epoch(network: Backbone, optimizer: torch.optim.Optimizer, coding: TaskCoding, data: ChipSet,
                targets: dict[str, torch.Tensor], spec: CnnSpec, epoch: int, seed: int,
                device: torch.device, base_variant: str = UNMASKED,
                cache: FeatureCache | None = None, after_step=None) -> dict[str, Any]:
    """One pass over the train images in a seeded order; mean loss per task over its labelled
    images, and how many chips of each variant were shown (``base_variant`` names what the
    ChipSet's base chips are). With ``cache`` the frozen blocks' outputs are read from it;
    ``after_step()`` runs after every optimiser step (the weight average)."""
    module = network.module
    module.train()
    chosen, flips = draw_variants(data, epoch, seed, spec.flip)
    totals = {t: 0.0 for t in coding.tasks}
    counts = {t: 0 for t in coding.tasks}
    variants: dict[str, int] = {}
    # every image its own group: a seeded shuffle cut into batches
    for batch in epoch_batches(np.arange(len(data)), epoch, seed, spec.batch_size, 1):
        if len(batch) < 2:  # batch norm needs two samples
            continue
        if cache is not None:
            outputs = module.from_frozen(cache.batch(batch, chosen, flips).to(device))
        else:
            chips = np.stack([data.chip(int(i), chosen[i]) for i in batch])
            outputs = module(network.preprocess(chips, flips[batch]).to(device))
        index = torch.from_numpy(batch)
        losses = {}
        for task in coding.tasks:
            loss, n = task_loss(task, outputs[task], targets[task][index].to(device), spec.label_smoothing)
            if loss is not None:
                losses[task] = (loss, n)
        if not losses:
            continue
        total = torch.stack([loss for loss, _ in losses.values()]).sum()
        if not torch.isfinite(total):
            values = {t: float(loss) for t, (loss, _) in losses.items()}
            raise ValueError(f"epoch {epoch}: the training loss is not finite {values}; "
                             f"lower attributes.cnn.lr (now {spec.lr})")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        for task, (loss, n) in losses.items():
            totals[task] += float(loss.detach()) * n
            counts[task] += n
        for i in batch:
            shown = base_variant if chosen[i] == UNMASKED else chosen[i]
            variants[shown] = variants.get(shown, 0) + 1
    return {"loss": {t: totals[t] / counts[t] if counts[t] else None for t in coding.tasks},
            "variants": dict(sorted(variants.items()))}


class WeightAverage:
    """An exponential moving average of a module's floating-point state, updated per step;
    ``swapped()`` puts the average in the module for a while (to score and copy it)."""

    def __init__(self, module: nn.Module, decay: float):
        self.module, self.decay = module, float(decay)
        self.state = {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self) -> None:
        for k, v in self.module.state_dict().items():
            if k in self.state:
                self.state[k].mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)

    @contextmanager
    def swapped(self):
        current = {k: v.detach().clone() for k, v in self.module.state_dict().items() if k in self.state}
        self.module.load_state_dict(self.state, strict=False)
        try:
            yield
        finally:
            self.module.load_state_dict(current, strict=False)


# --- the run -------------------------------------------------------------------------------------


@dataclass
class AttributeCnn:
    """A trained attribute CNN: per task the weights of its best val epoch."""

    network: Backbone  # module: AttributeNet; preprocessing of the backbone
    coding: TaskCoding
    spec: CnnSpec
    seed: int
    states: dict[int, dict[str, torch.Tensor]]  # epoch -> weights (CPU), for the epochs some task chose
    best_epoch: dict[str, int]
    val_score: dict[str, float | None]
    curve: list[dict[str, Any]] = field(default_factory=list)
    device: str = "cpu"  # where it was trained
    timing: dict[str, Any] = field(default_factory=dict)  # seconds: never part of the deterministic outputs

    def predict(self, data: LabelledChips, batch_size: int | None = None,
                device: str | torch.device = "auto") -> dict[str, attr.Prediction]:
        """task -> predictions for every row of ``data``, each task by its own best epoch."""
        dev = resolve_device(device)
        module = self.network.module.to(dev)
        size, mirrored = batch_size or self.spec.batch_size, self.spec.test_flip
        epochs = sorted(set(self.best_epoch.values()))
        cache = None
        if self.spec.frozen_blocks:  # the frozen blocks are the same in every epoch: run them once
            module.load_state_dict(self.states[epochs[0]])
            cache = val_cache(self.network, data, size, dev, mirrored)
            items = [(data.variants[k], k) for k in range(len(data))]
        out: dict[str, attr.Prediction] = {}
        for epoch in epochs:
            module.load_state_dict(self.states[epoch])
            outputs = network_outputs(self.network, data, size, dev, mirrored) if cache is None else \
                cached_outputs(self.network, cache, items, size, dev, mirrored)
            for task in self.coding.tasks:
                if self.best_epoch[task] == epoch:
                    out[task] = self.coding.decode(task, outputs[task])
        module.to("cpu")
        return {t: out[t] for t in self.coding.tasks}


def train_attribute_cnn(train: ChipSet, train_labels: dict[str, np.ndarray], val: LabelledChips, spec: CnnSpec,
                        tasks: Sequence[str], age_groups: Sequence[int], seed: int, threads: int | None = 1,
                        cache_dir: str | Path | None = None, device: str | torch.device = "auto",
                        base_variant: str = UNMASKED) -> AttributeCnn:
    """Fine-tune on ``train`` (labels aligned with its images), select each task's epoch on ``val``.

    ``base_variant``: what the ChipSet's base chips are (a mask name when a run trains on that
    mask alone; the per-epoch draw then always shows it)."""
    if len(train) < 2:
        raise ValueError(f"the attribute CNN needs at least 2 train images with a chip, found {len(train)}")
    for task in tasks:
        if task not in attr.TASKS:
            raise attr.TaskError(f"unknown task {task!r}; known: {list(attr.TASKS)}")
        if len(train_labels[task]) != len(train) or len(val.labels[task]) != len(val):
            raise ValueError(f"task {task!r}: labels and chips differ in length")
    coding = TaskCoding.fit(tasks, age_groups, train_labels)
    targets = {t: coding.encode(t, train_labels[t]) for t in tasks}
    dev = resolve_device(device)
    timing: dict[str, Any] = {"device": dev.type, "threads": threads, "train_images": len(train), "epochs": []}
    with torch_threads(threads), torch.random.fork_rng(devices=[]), deterministic_torch(dev):
        torch.manual_seed(item_seed(seed, "attributes_cnn", "init"))  # output layers, random backbones
        network = build_network(spec, coding, cache_dir)
        network.module.to(dev)
        net = network.module
        optimizer = torch.optim.Adam(
            [{"params": net.trainable()},
             {"params": net.heads.parameters(), "lr": spec.lr if spec.head_lr is None else spec.head_lr}],
            lr=spec.lr, weight_decay=spec.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=spec.epochs) \
            if spec.schedule == "cosine" else None
        cache = vcache = None
        val_items = [(val.variants[k], k) for k in range(len(val))]
        if spec.frozen_blocks:
            cache = train_cache(network, train, spec, dev)
            vcache = val_cache(network, val, spec.batch_size, dev, spec.test_flip)
            timing["feature_cache"] = {"chips": cache.chips + vcache.chips,
                                       "seconds": round(cache.seconds + vcache.seconds, 3),
                                       "megabytes": round((cache.nbytes() + vcache.nbytes()) / 2**20, 1)}
            log.info("frozen blocks: %d chips cached in %.1f s (%.0f MB)", cache.chips + vcache.chips,
                     cache.seconds + vcache.seconds, (cache.nbytes() + vcache.nbytes()) / 2**20)
        best: dict[str, tuple[float | None, int]] = {}
        states: dict[int, dict[str, torch.Tensor]] = {}
        curve = []
        stale = 0
        if spec.linear_probe:  # epoch 0: the linear heads on the network as it starts, a candidate too
            started = time.perf_counter()
            probes = probe_heads(network, coding, cache, train, train_labels, vcache, val, spec.batch_size, dev, seed)
            scores = val_scores(coding, cached_outputs(network, vcache, val_items, spec.batch_size, dev, spec.test_flip),
                                val.labels)
            curve.append({"epoch": 0, "loss": {t: None for t in tasks}, "val": scores, "variants": {},
                          "linear_probe": {t: p["params"] for t, p in probes.items()}})
            timing["linear_probe_seconds"] = round(time.perf_counter() - started, 3)
            log.info("epoch 0 (linear heads on the starting network): val %s", _rounded(scores))
            best = {t: (scores[t], 0) for t in tasks}
            states[0] = _state_copy(network.module)
        average = WeightAverage(network.module, spec.ema) if spec.ema is not None else None
        for epoch in range(1, spec.epochs + 1):
            started = time.perf_counter()
            stats = train_epoch(network, optimizer, coding, train, targets, spec, epoch, seed, dev, base_variant,
                                cache, None if average is None else average.update)
            if scheduler is not None:
                scheduler.step()
            seconds = time.perf_counter() - started
            with average.swapped() if average is not None else nullcontext():  # val (and keep) the average
                outputs = network_outputs(network, val, spec.batch_size, dev, spec.test_flip) if vcache is None else \
                    cached_outputs(network, vcache, val_items, spec.batch_size, dev, spec.test_flip)
                kept = _state_copy(network.module)
            scores = val_scores(coding, outputs, val.labels)
            curve.append({"epoch": epoch, "loss": stats["loss"], "val": scores, "variants": stats["variants"]})
            timing["epochs"].append({"epoch": epoch, "train_seconds": round(seconds, 3),
                                     "val_seconds": round(time.perf_counter() - started - seconds, 3),
                                     "seconds_per_1000_chips": round(1000 * seconds / len(train), 3)})
            log.info("epoch %d: loss %s, val %s, %.1f s (%.1f s per 1,000 chips)", epoch, _rounded(stats["loss"]),
                     _rounded(scores), time.perf_counter() - started, 1000 * seconds / len(train))
            improved = [t for t in tasks if t not in best or _better(t, scores[t], best[t][0])]
            for task in improved:
                best[task] = (scores[task], epoch)
            if improved:
                states[epoch] = kept
            chosen = {e for _, e in best.values()}
            states = {e: s for e, s in states.items() if e in chosen}
            stale = 0 if improved else stale + 1
            if spec.patience is not None and stale >= spec.patience:
                log.info("no task improved on val for %d epochs: stopping after epoch %d", stale, epoch)
                break
        del cache, vcache
    per_1000 = [e["seconds_per_1000_chips"] for e in timing["epochs"]]
    timing["mean_seconds_per_epoch_per_1000_chips"] = round(float(np.mean(per_1000)), 3)
    network.module.to("cpu").eval()
    for task, (score, epoch) in best.items():
        if score is None:
            log.warning("task %s: no labelled val chips, the last epoch is kept", task)
    return AttributeCnn(network, coding, spec, seed, states, {t: best[t][1] for t in tasks},
                        {t: best[t][0] for t in tasks}, curve, dev.type, timing)


def _rounded(values: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(v, 4) for k, v in values.items()}


# --- checkpoint ----------------------------------------------------------------------------------


def checkpoint_metadata(model: AttributeCnn) -> dict[str, Any]:
    n = model.network
    return {"format": CHECKPOINT_FORMAT, "arch": n.arch, "dim": n.dim, "input_size": n.input_size,
            "mean": list(n.mean), "std": list(n.std), "spec": model.spec.to_dict(), "seed": model.seed,
            "coding": model.coding.to_dict(), "best_epoch": model.best_epoch, "val_score": model.val_score}


def checkpoint_bytes(model: AttributeCnn) -> bytes:
    """safetensors bytes: every kept epoch's weights, metadata as one sorted JSON string."""
    tensors = {f"epoch_{e}.{name}": t.contiguous() for e, state in sorted(model.states.items())
               for name, t in state.items()}
    return save_safetensors(tensors, metadata={"maskbench": json.dumps(checkpoint_metadata(model), sort_keys=True)})


def save_attribute_cnn(path: str | Path, model: AttributeCnn) -> None:
    write_bytes(path, checkpoint_bytes(model))


def load_attribute_cnn(path: str | Path) -> AttributeCnn:
    """The model a run saved, rebuilt from the checkpoint's own metadata (CPU, eval mode)."""
    meta = read_checkpoint_metadata(path, CHECKPOINT_FORMAT, "maskbench attribute CNN checkpoint",
                                    "re-run the attributes_cnn rule")
    spec = CnnSpec.from_dict(meta["spec"])
    c = meta["coding"]
    coding = TaskCoding(tuple(c["tasks"]), {t: list(v) for t, v in c["classes"].items()}, c["age_mean"], c["age_std"])
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten; keep the caller's stream
        network = build_network(spec, coding, pretrained=False)
    network.mean = tuple(float(v) for v in meta["mean"])
    network.std = tuple(float(v) for v in meta["std"])
    states: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in load_file(str(path)).items():
        epoch, key = name.split(".", 1)
        states.setdefault(int(epoch.removeprefix("epoch_")), {})[key] = tensor
    best_epoch = {t: int(e) for t, e in meta["best_epoch"].items()}
    missing = sorted(set(best_epoch.values()) - set(states))
    if missing:
        raise ValueError(f"{path} lacks the weights of epochs {missing} that its tasks selected")
    for state in states.values():  # every kept state must fit the network
        network.module.load_state_dict(state, strict=True)
    network.module.eval()
    return AttributeCnn(network, coding, spec, int(meta["seed"]), states, best_epoch, dict(meta["val_score"]))
