"""A CNN fine-tuned on aligned chips to predict sex, race, age and age group (AJCAI 2021's model).

One backbone from :mod:`maskbench.backbones` (torchvision's ResNet-50 from ImageNet weights, as in
the paper, or dlib's face ResNet) with one linear output per task: cross-entropy over the classes
of sex, race and age group, L1 on the standardised age. Images missing a label still train the
other tasks.

Training chips are drawn as the fine-tuning for verification draws them
(:func:`maskbench.finetune.draw_variants`, seeded per epoch and image): in a mixed run each image
shows its unmasked chip or one of its masked chips; a run on one variant always shows that one.
After every epoch each task is scored on the validation chips (accuracy, or MAE for age) and keeps
the weights of its own best epoch, as each embedding head is selected on val for its own task.
Epoch 0, the untrained output layers, is not a candidate. The test part never reaches training:
:func:`train_attribute_cnn` takes the train and val parts only.

The checkpoint is safetensors holding the weights of every selected epoch (``epoch_<n>.<name>``)
and metadata that rebuild the network, so :func:`load_attribute_cnn` needs no config.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from torch import nn

from maskbench import attributes as attr
from maskbench.atomic import write_bytes
from maskbench.attributes_step import CnnSpec
from maskbench.backbones import Backbone, build_backbone
from maskbench.chips import decode_chip
from maskbench.dlib_resnet import resolve_device, torch_threads
from maskbench.finetune import UNMASKED, ChipSet, _state_copy, deterministic_torch, draw_variants, epoch_batches
from maskbench.seeds import item_seed

log = logging.getLogger(__name__)

CNN_HEAD = "cnn"  # the head kind of CNN runs in metrics files and tables
CHECKPOINT_FORMAT = "maskbench.attribute_cnn/1"
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


def task_loss(task: str, out: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor | None, int]:
    """(mean loss over the labelled images of a batch, their number); None when it has none."""
    keep = ~torch.isnan(target) if attr.is_regression(task) else target != IGNORE
    n = int(keep.sum())
    if n == 0:
        return None, 0
    if attr.is_regression(task):
        return F.l1_loss(out[keep, 0], target[keep]), n
    return F.cross_entropy(out[keep], target[keep]), n


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
    """A backbone's feature with one linear output per task."""

    def __init__(self, trunk: nn.Module, dim: int, outputs: dict[str, int]):
        super().__init__()
        self.trunk = trunk
        self.heads = nn.ModuleDict({task: nn.Linear(dim, n) for task, n in outputs.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feature = self.trunk(x)
        return {task: head(feature) for task, head in self.heads.items()}


def build_network(spec: CnnSpec, coding: TaskCoding, cache_dir: str | Path | None = None,
                  pretrained: bool | None = None) -> Backbone:
    """The backbone (its preprocessing kept) with the task outputs on top, as one Backbone record.

    ``pretrained=False`` gives random weights (to load a checkpoint into)."""
    backbone_spec = spec.backbone_spec()
    if pretrained is False:
        backbone_spec = {k: v for k, v in backbone_spec.items() if k != "weights"} | {"pretrained": False}
    trunk = build_backbone(backbone_spec, cache_dir=cache_dir)
    net = AttributeNet(trunk.module, trunk.dim, coding.outputs())
    return Backbone(net, trunk.input_size, trunk.mean, trunk.std, trunk.dim, trunk.arch)


def network_outputs(network: Backbone, data: LabelledChips, batch_size: int,
                    device: torch.device) -> dict[str, np.ndarray]:
    """task -> raw outputs (N x classes, or N x 1) for every row of ``data``, in eval mode."""
    module = network.module
    was_training = module.training
    module.eval()
    parts: dict[str, list[np.ndarray]] = {t: [] for t in module.heads}
    try:
        with torch.inference_mode():
            for start in range(0, len(data), batch_size):
                chips = np.stack([data.decode(k) for k in range(start, min(start + batch_size, len(data)))])
                for task, out in module(network.preprocess(chips).to(device)).items():
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


def train_epoch(network: Backbone, optimizer: torch.optim.Optimizer, coding: TaskCoding, data: ChipSet,
                targets: dict[str, torch.Tensor], spec: CnnSpec, epoch: int, seed: int,
                device: torch.device, base_variant: str = UNMASKED) -> dict[str, Any]:
    """One pass over the train images in a seeded order; mean loss per task over its labelled
    images, and how many chips of each variant were shown (``base_variant`` names what the
    ChipSet's base chips are)."""
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
        chips = np.stack([data.chip(int(i), chosen[i]) for i in batch])
        outputs = module(network.preprocess(chips, flips[batch]).to(device))
        index = torch.from_numpy(batch)
        losses = {}
        for task in coding.tasks:
            loss, n = task_loss(task, outputs[task], targets[task][index].to(device))
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
        for task, (loss, n) in losses.items():
            totals[task] += float(loss.detach()) * n
            counts[task] += n
        for i in batch:
            shown = base_variant if chosen[i] == UNMASKED else chosen[i]
            variants[shown] = variants.get(shown, 0) + 1
    return {"loss": {t: totals[t] / counts[t] if counts[t] else None for t in coding.tasks},
            "variants": dict(sorted(variants.items()))}


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

    def predict(self, data: LabelledChips, batch_size: int | None = None,
                device: str | torch.device = "auto") -> dict[str, attr.Prediction]:
        """task -> predictions for every row of ``data``, each task by its own best epoch."""
        dev = resolve_device(device)
        module = self.network.module.to(dev)
        out: dict[str, attr.Prediction] = {}
        for epoch in sorted(set(self.best_epoch.values())):
            module.load_state_dict(self.states[epoch])
            outputs = network_outputs(self.network, data, batch_size or self.spec.batch_size, dev)
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
    with torch_threads(threads), torch.random.fork_rng(devices=[]), deterministic_torch(dev):
        torch.manual_seed(item_seed(seed, "attributes_cnn", "init"))  # output layers, random backbones
        network = build_network(spec, coding, cache_dir)
        network.module.to(dev)
        net = network.module
        optimizer = torch.optim.Adam(
            [{"params": net.trunk.parameters()},
             {"params": net.heads.parameters(), "lr": spec.lr if spec.head_lr is None else spec.head_lr}],
            lr=spec.lr, weight_decay=spec.weight_decay)
        best: dict[str, tuple[float | None, int]] = {}
        states: dict[int, dict[str, torch.Tensor]] = {}
        curve = []
        for epoch in range(1, spec.epochs + 1):
            started = time.perf_counter()
            stats = train_epoch(network, optimizer, coding, train, targets, spec, epoch, seed, dev, base_variant)
            scores = val_scores(coding, network_outputs(network, val, spec.batch_size, dev), val.labels)
            curve.append({"epoch": epoch, "loss": stats["loss"], "val": scores, "variants": stats["variants"]})
            log.info("epoch %d: loss %s, val %s, %.1f s", epoch, _rounded(stats["loss"]), _rounded(scores),
                     time.perf_counter() - started)
            improved = [t for t in tasks if t not in best or _better(t, scores[t], best[t][0])]
            for task in improved:
                best[task] = (scores[task], epoch)
            if improved:
                states[epoch] = _state_copy(network.module)
            chosen = {e for _, e in best.values()}
            states = {e: s for e, s in states.items() if e in chosen}
    network.module.to("cpu").eval()
    for task, (score, epoch) in best.items():
        if score is None:
            log.warning("task %s: no labelled val chips, the last epoch is kept", task)
    return AttributeCnn(network, coding, spec, seed, states, {t: best[t][1] for t in tasks},
                        {t: best[t][0] for t in tasks}, curve, dev.type)


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
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"attribute CNN checkpoint {path} not found: re-run the attributes_cnn rule")
    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get("maskbench")
    meta = json.loads(raw) if raw else {}
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a maskbench attribute CNN checkpoint (format {meta.get('format')!r}, "
                         f"expected {CHECKPOINT_FORMAT!r})")
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
