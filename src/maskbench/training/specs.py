"""Training settings parsed and checked without torch, so a bad config fails at start-up, in milliseconds.

The workflow checks every trained model's ``train:`` entry while it builds the DAG; the training
code (``finetune``, ``train_head``, ``losses``) reads the same parsed settings from here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from maskbench.training.selection import DEFAULT_UNMASKED_TOLERANCE, check_tolerance

LOSS_DEFAULTS: dict[str, dict[str, Any]] = {
    "supcon": {"temperature": 0.1},
    "arcface": {"margin": 0.5, "scale": 30.0, "focal_gamma": 0.0},
    "triplet": {"margin": 0.2, "mining": "batch_hard"},
}
MININGS = ("batch_hard", "semi_hard")
TRAINABLE_ARCHS = ("dlib_resnet", "resnet50")
REGIONS = ("full", "upper")  # upper: the chip above the nose bridge only (maskbench.models.upper_face)

# what each loss option must satisfy, as (test, wording)
_LOSS_VALUES = {
    ("supcon", "temperature"): (lambda v: v > 0, "> 0"),
    ("arcface", "margin"): (lambda v: 0 <= v < math.pi / 2, "in [0, pi/2) radians"),
    ("arcface", "scale"): (lambda v: v > 0, "> 0"),
    ("arcface", "focal_gamma"): (lambda v: v >= 0, ">= 0"),
    ("triplet", "margin"): (lambda v: v >= 0, ">= 0"),
}


def loss_options(spec: dict) -> tuple[str, dict[str, Any]]:
    """A config ``loss:`` dict checked and completed with its defaults: (kind, options)."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"loss spec must be a dict with a 'kind' (one of {sorted(LOSS_DEFAULTS)}), got {spec!r}")
    kind = spec["kind"]
    if kind not in LOSS_DEFAULTS:
        raise ValueError(f"unknown loss kind {kind!r}: use one of {sorted(LOSS_DEFAULTS)}")
    unknown = sorted(set(spec) - {"kind"} - set(LOSS_DEFAULTS[kind]))
    if unknown:
        raise ValueError(f"loss {kind!r} has no option(s) {unknown}; its options are {sorted(LOSS_DEFAULTS[kind])}")
    args = {**LOSS_DEFAULTS[kind], **{k: v for k, v in spec.items() if k != "kind"}}
    for key, value in args.items():
        if key == "mining":
            if value not in MININGS:
                raise ValueError(f"unknown triplet mining {value!r}: use one of {list(MININGS)}")
            continue
        test, wording = _LOSS_VALUES[(kind, key)]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not test(value):
            raise ValueError(f"{kind} {key} must be {wording}, got {value!r}")
    return kind, args


TRAIN_DEFAULTS: dict[str, Any] = {
    "dim": None,  # None: the base embedding's dimension
    "hidden": 512,
    "epochs": 20,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "identities_per_batch": 32,
    "samples_per_identity": 4,
    "batches_per_epoch": None,  # None: enough to see every image (and every identity) once
    "unmasked_tolerance": DEFAULT_UNMASKED_TOLERANCE,  # val unmasked EER may rise this much at most
    "unmasked_weight": 10.0,  # weight of the term keeping unmasked faces' similarities those of the base
}
# keys of a model's `train:` config that the workflow reads (which data), not the training loop
WORKFLOW_KEYS = frozenset({"datasets", "split", "variants"})
FINETUNE_KEYS = frozenset({"arch", "pretrained", "optimizer", "momentum", "flip", "weights", "input_size",
                           "val_score", "val_impostors", "val_max_genuine", "region"})


def resolve_spec(spec: dict[str, Any], base_dim: int) -> dict[str, Any]:
    """The training config with defaults filled in; unknown keys are an error naming them."""
    if not isinstance(spec, dict) or "loss" not in spec:
        raise ValueError(f"train spec must be a dict with a 'loss' entry, got {spec!r}")
    finetune_only = sorted(set(spec) & FINETUNE_KEYS)
    if finetune_only:
        raise ValueError(f"train options {finetune_only} are for finetune models, not projection heads")
    unknown = sorted(set(spec) - set(TRAIN_DEFAULTS) - WORKFLOW_KEYS - {"loss", "batch_size"})
    if unknown:
        raise ValueError(f"unknown train option(s) {unknown}; known: {sorted({*TRAIN_DEFAULTS, 'loss', 'batch_size'})}")
    out = {**TRAIN_DEFAULTS, **{k: v for k, v in spec.items() if k in TRAIN_DEFAULTS}}
    loss = dict(spec["loss"])
    if loss.get("kind") in LOSS_DEFAULTS:
        loss = {**LOSS_DEFAULTS[loss["kind"]], **loss}
    out["loss"] = loss
    if "batch_size" in spec:  # P x K: batch_size fixes P unless P is given too
        k = int(out["samples_per_identity"])
        if "identities_per_batch" not in spec:
            out["identities_per_batch"] = max(2, int(spec["batch_size"]) // k)
        elif int(spec["identities_per_batch"]) * k != int(spec["batch_size"]):
            raise ValueError(f"batch_size {spec['batch_size']} != identities_per_batch "
                             f"{spec['identities_per_batch']} x samples_per_identity {k}; give two of them")
    if out["dim"] is None:
        out["dim"] = int(base_dim)
    for key in ("dim", "hidden", "epochs"):
        if int(out[key]) != out[key] or out[key] < 1:
            raise ValueError(f"train.{key} must be a positive integer, got {out[key]!r}")
    for key in ("identities_per_batch", "samples_per_identity"):
        if int(out[key]) != out[key] or out[key] < 2:
            raise ValueError(f"train.{key} must be an integer >= 2, got {out[key]!r}")
    if out["batches_per_epoch"] is not None and (int(out["batches_per_epoch"]) != out["batches_per_epoch"]
                                                 or out["batches_per_epoch"] < 1):
        raise ValueError(f"train.batches_per_epoch must be a positive integer, got {out['batches_per_epoch']!r}")
    out["unmasked_tolerance"] = check_tolerance(out["unmasked_tolerance"])
    weight = out["unmasked_weight"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        raise ValueError(f"train.unmasked_weight must be a number >= 0, got {weight!r}")
    if not float(out["lr"]) > 0 or not float(out["weight_decay"]) >= 0:
        raise ValueError(f"train.lr must be > 0 and weight_decay >= 0, got {out['lr']!r}, {out['weight_decay']!r}")
    return out


def check_spec_keys(d: Any, spec_cls: type, name: str, mapping_name: str, required: dict[str, str | None],
                    also_known: tuple[str, ...] = ()) -> None:
    """The key checks every settings block shares: a mapping, no unknown key (naming the known
    ones, with ``also_known`` keys read elsewhere), every required key present (with a hint)."""
    if not isinstance(d, dict):
        raise ValueError(f"{mapping_name} must be a mapping, not {type(d).__name__}")
    known = {f.name for f in fields(spec_cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {name} keys {unknown}; known: {sorted(known | set(also_known))}")
    for key, hint in required.items():
        if key not in d:
            raise ValueError(f"{name} key {key!r} is missing" + (f" ({hint})" if hint else ""))


@dataclass(frozen=True)
class FinetuneSpec:
    """One fine-tuning config entry; validated on construction so a bad config fails first."""

    arch: str
    loss: dict
    pretrained: bool = True
    weights: str | None = None  # resnet50: ImageNet .pth (default: torch's hub cache)
    input_size: int | None = None  # resnet50 only (default 224)
    dim: int | None = None  # resnet50: a linear projection of the 2048-d feature to this size
    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    epochs: int = 5
    batch_size: int = 32
    samples_per_identity: int = 4
    flip: bool = True
    val_score: str = "cosine"
    val_impostors: int = 10000
    val_max_genuine: int = 20000
    unmasked_tolerance: float = DEFAULT_UNMASKED_TOLERANCE
    region: str = "full"  # upper: the chip above the nose bridge only (maskbench.models.upper_face)

    def __post_init__(self) -> None:
        if self.arch not in TRAINABLE_ARCHS:
            raise ValueError(
                f"finetune key 'arch': {self.arch!r} cannot be fine-tuned; use one of {list(TRAINABLE_ARCHS)}")
        if not isinstance(self.loss, dict) or "kind" not in self.loss:
            raise ValueError("finetune key 'loss' must be a mapping with a 'kind' (supcon, arcface or triplet)")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"finetune key 'optimizer': {self.optimizer!r}; use adam or sgd")
        if self.val_score not in ("cosine", "neg_l2", "inv_l2"):
            raise ValueError(f"finetune key 'val_score': {self.val_score!r}; use cosine, neg_l2 or inv_l2")
        for key in ("pretrained", "flip"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"finetune key {key!r}: {getattr(self, key)!r} must be true or false")
        for key, low in (("epochs", 1), ("batch_size", 2), ("samples_per_identity", 1),
                         ("val_impostors", 1), ("val_max_genuine", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"finetune key {key!r}: {value!r} must be an integer >= {low}")
        for key in ("lr", "weight_decay", "momentum"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"finetune key {key!r}: {value!r} must be a number >= 0")
        check_tolerance(self.unmasked_tolerance)
        if self.region not in REGIONS:
            raise ValueError(f"finetune key 'region': {self.region!r}; use one of {list(REGIONS)}")
        if not self.lr > 0:
            raise ValueError(f"finetune key 'lr': {self.lr!r} must be > 0")
        if self.arch == "dlib_resnet":
            for key in ("weights", "input_size"):
                if getattr(self, key) is not None:
                    raise ValueError(f"finetune key {key!r} applies to resnet50 only; drop it for dlib_resnet")
            if self.dim not in (None, 128):
                raise ValueError("dlib_resnet gives 128-d embeddings; drop 'dim' (a projection is for resnet50)")
        if self.dim is not None and (isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 1):
            raise ValueError(f"finetune key 'dim': {self.dim!r} must be a positive integer")
        loss_options(self.loss)  # check the loss options now

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FinetuneSpec":
        """Parse a config entry, naming an unknown or missing key."""
        check_spec_keys(d, cls, "finetune", "a finetune spec", required={"arch": None, "loss": None})
        values = dict(d)
        for key in ("lr", "weight_decay", "momentum", "unmasked_tolerance"):
            if isinstance(values.get(key), int) and not isinstance(values.get(key), bool):
                values[key] = float(values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
