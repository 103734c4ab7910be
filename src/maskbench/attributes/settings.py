"""The attribute study's settings: what a config's ``attributes:`` and ``splits:`` ask for, checked
at start-up (no sklearn, no torch) so the workflow can build its DAG without them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from maskbench.attributes import labels as attr
from maskbench.config import ALL_IMAGES, UNMASKED, ConfigError, embedding_models, masks_for, trained_on
from maskbench.protocols.split_spec import DEFAULT_RATIOS, check_ratios
from maskbench.training.specs import check_spec_keys

MIXED = "mixed"  # train variant: unmasked plus every mask type of the dataset
POOLED = "masked"  # test variant reported in tables: every mask type of the dataset pooled
DEFAULT_STRATIFY = ("sex", "race", "age_group")


def split_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The `splits:` section with its defaults filled in."""
    spec = dict(config.get("splits") or {})
    return {"ratios": dict(spec.get("ratios") or DEFAULT_RATIOS),
            "stratify": list(spec.get("stratify") or DEFAULT_STRATIFY)}


CNN_ARCHS = ("dlib_resnet", "resnet50")  # the backbones maskbench.training.finetune can train
DLIB_BLOCKS = 14  # residual blocks of dlib's face ResNet (maskbench.models.dlib_resnet)
CNN_SCHEDULES = ("constant", "cosine")  # learning-rate schedules of the attribute CNN


@dataclass(frozen=True)
class CnnSpec:
    """The `attributes.cnn` training settings (what it trains on is the run's train variant).

    Plain Python, so the workflow checks it when it reads the config, before any job runs.
    """

    arch: str
    pretrained: bool = True
    weights: str | None = None  # resnet50: ImageNet .pth (default: torch's hub cache)
    input_size: int | None = None  # resnet50 only (default 224)
    epochs: int = 10
    lr: float = 1e-4
    head_lr: float | None = None  # the new task outputs (default: lr)
    weight_decay: float = 0.0
    batch_size: int = 32
    flip: bool = True
    # dlib_resnet: the stem and the first N residual blocks stay as dlib trained them; their
    # output is computed once per chip (and its mirror image) and cached, and only the later
    # blocks and the task outputs train, which makes a CPU epoch cheap (0: train every layer)
    frozen_blocks: int = 0
    patience: int | None = None  # stop after this many epochs in which no task improved on val
    # start each task output from a linear head fitted on the network's own train embeddings
    # (chosen on val, as the embedding heads), so fine-tuning starts from the linear head's
    # answer instead of random outputs; needs frozen_blocks (the embeddings come from the cache)
    linear_probe: bool = False
    # learning rates over the epochs: constant, or cosine (from lr / head_lr down to 0 at `epochs`)
    schedule: str = "constant"
    label_smoothing: float = 0.0  # cross-entropy label smoothing of the class tasks
    # per-step exponential moving average of the weights (decay, e.g. 0.99): val scores, the
    # selected epochs and the saved weights are the average's; None: the weights themselves
    ema: float | None = None
    # val and test chips scored as the mean of the outputs on the chip and on its mirror image
    test_flip: bool = False

    def __post_init__(self) -> None:
        if self.arch not in CNN_ARCHS:
            raise ValueError(f"attributes.cnn key 'arch': {self.arch!r}; use one of {list(CNN_ARCHS)}")
        blocks = self.frozen_blocks
        if isinstance(blocks, bool) or not isinstance(blocks, int) or not 0 <= blocks <= DLIB_BLOCKS:
            raise ValueError(f"attributes.cnn key 'frozen_blocks': {blocks!r} must be an integer from 0 to "
                             f"{DLIB_BLOCKS} (dlib's face ResNet has {DLIB_BLOCKS} residual blocks)")
        if blocks and self.arch != "dlib_resnet":
            raise ValueError("attributes.cnn key 'frozen_blocks' applies to dlib_resnet only; drop it for "
                             f"{self.arch}")
        if self.linear_probe and not self.frozen_blocks:
            raise ValueError("attributes.cnn key 'linear_probe' needs frozen_blocks >= 1 (it reads cached features)")
        if self.patience is not None and (isinstance(self.patience, bool) or not isinstance(self.patience, int)
                                          or self.patience < 1):
            raise ValueError(f"attributes.cnn key 'patience': {self.patience!r} must be an integer >= 1")
        for key in ("pretrained", "flip", "linear_probe", "test_flip"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"attributes.cnn key {key!r}: {getattr(self, key)!r} must be true or false")
        for key, low in (("epochs", 1), ("batch_size", 2)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"attributes.cnn key {key!r}: {value!r} must be an integer >= {low}")
        for key in ("lr", "weight_decay"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"attributes.cnn key {key!r}: {value!r} must be a number >= 0")
        for key in ("lr", "head_lr"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
                raise ValueError(f"attributes.cnn key {key!r}: {value!r} must be a number > 0")
        if self.arch == "dlib_resnet":
            for key in ("weights", "input_size"):
                if getattr(self, key) is not None:
                    raise ValueError(f"attributes.cnn key {key!r} applies to resnet50 only; drop it for dlib_resnet")
        if self.schedule not in CNN_SCHEDULES:
            raise ValueError(f"attributes.cnn key 'schedule': {self.schedule!r}; use one of {list(CNN_SCHEDULES)}")
        ls = self.label_smoothing
        if isinstance(ls, bool) or not isinstance(ls, (int, float)) or not 0 <= ls < 1:
            raise ValueError(f"attributes.cnn key 'label_smoothing': {ls!r} must be a number in [0, 1)")
        if self.ema is not None and (isinstance(self.ema, bool) or not isinstance(self.ema, (int, float))
                                     or not 0 < self.ema < 1):
            raise ValueError(f"attributes.cnn key 'ema': {self.ema!r} must be a number in (0, 1) or null")
        size = self.input_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 32):
            raise ValueError(f"attributes.cnn key 'input_size': {size!r} must be an integer >= 32")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CnnSpec":
        """Parse the config entry, naming an unknown or missing key."""
        check_spec_keys(d, cls, "attributes.cnn", "attributes.cnn", required={"arch": "dlib_resnet or resnet50"},
                        also_known=("train_variants", "threads", "splits"))
        return cls(**d)

    def backbone_spec(self) -> dict[str, Any]:
        """The spec maskbench.models.backbones.build_backbone takes."""
        spec: dict[str, Any] = {"arch": self.arch, "pretrained": self.pretrained}
        if self.weights is not None and self.pretrained:
            spec["weights"] = self.weights
        if self.input_size is not None:
            spec["input_size"] = self.input_size
        return spec

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cnn_model_name(arch: str) -> str:
    """The `model` a CNN run is filed under in paths and tables (beside the embedding models)."""
    return f"cnn_{arch}"


def attribute_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The `attributes:` section with its defaults filled in; `cnn` is None without a CNN, else
    its model name, training spec, train variants (default: the heads' train variants), split
    strategies (default: the study's) and torch threads (default 1: from the config, as the
    trained bytes depend on it)."""
    spec = dict(config.get("attributes") or {})
    train = list(spec.get("train_variants") or [UNMASKED])
    cnn = spec.get("cnn")
    if cnn:
        cnn = dict(cnn)
        cnn = {"model": cnn_model_name(str(cnn.get("arch"))),
               "train_variants": list(cnn.pop("train_variants", None) or train),
               "threads": int(cnn.pop("threads", None) or 1),
               "splits": list(cnn.pop("splits", None) or spec.get("splits") or ["random", "uniform"]),
               "spec": cnn}
    return {
        "datasets": list(spec.get("datasets") or config["datasets"]),
        # models with embeddings (an ensemble or imported scores have none to train a head on)
        "models": list(spec.get("models") or embedding_models(config)),
        "splits": list(spec.get("splits") or ["random", "uniform"]),
        "train_variants": train,
        "tasks": list(spec.get("tasks") or attr.TASKS),
        "heads": list(spec.get("heads") or ["linear"]),
        "age_groups": list(spec.get("age_groups") or attr.DEFAULT_AGE_GROUPS),
        "thresholds": list(spec.get("thresholds") or attr.DEFAULT_THRESHOLDS),
        "bootstrap": int(spec.get("bootstrap", 1000)),  # resamples of the privacy table's intervals
        "cnn": cnn or None,
    }


def train_variants(config: dict[str, Any], dataset: str, train: str) -> list[str]:
    """The embedding variants a head trains (and is selected) on."""
    return [UNMASKED, *masks_for(config, dataset)] if train == MIXED else [train]


def check_attributes_config(config: dict[str, Any]) -> None:
    """Raise ConfigError naming the first reference of `splits:`/`attributes:` that does not exist."""
    try:
        check_ratios(split_settings(config)["ratios"])
    except ValueError as exc:
        raise ConfigError(f"splits.ratios: {exc}") from None
    settings = attribute_settings(config)
    for dataset in settings["datasets"]:
        if dataset not in config["datasets"]:
            raise ConfigError(f"attributes.datasets: unknown dataset {dataset!r}; known: {sorted(config['datasets'])}")
        known = {UNMASKED, MIXED, *masks_for(config, dataset)}
        cnn_variants = [("attributes.cnn.train_variants", t) for t in settings["cnn"]["train_variants"]] \
            if settings["cnn"] else []
        for key, train in [("attributes.train_variants", t) for t in settings["train_variants"]] + cnn_variants:
            if train not in known:
                raise ConfigError(
                    f"{key}: {train!r} is not a variant of dataset {dataset!r}; use one of {sorted(known)}"
                )
    for model in settings["models"]:
        if model not in config["models"]:
            raise ConfigError(f"attributes.models: unknown model {model!r}; known: {sorted(config['models'])}")
        if model not in embedding_models(config):
            raise ConfigError(f"attributes.models: {model!r} has no embeddings to train a head on; use one of "
                              f"{embedding_models(config)}")
        for dataset in settings["datasets"]:
            strategy = trained_on(config, model).get(dataset)
            if strategy == ALL_IMAGES:
                raise ConfigError(f"attributes.models: {model!r} may have seen every image of {dataset!r} "
                                  "(trained_on without a split), so no split of it tests unseen faces")
            if strategy is not None and any(s != strategy for s in settings["splits"]):
                raise ConfigError(
                    f"attributes.models: {model!r} was trained on {dataset!r} (the {strategy} split), so its "
                    f"embeddings may only be studied with attributes.splits: [{strategy}] there; other "
                    "splits would test it on images it learnt from"
                )
    if settings["cnn"]:
        try:
            CnnSpec.from_dict(settings["cnn"]["spec"])
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        extra = [s for s in settings["cnn"]["splits"] if s not in settings["splits"]]
        if extra:
            raise ConfigError(f"attributes.cnn.splits: {extra} are not among attributes.splits {settings['splits']}")
        if settings["cnn"]["model"] in settings["models"]:
            raise ConfigError(f"attributes.cnn files its runs as model {settings['cnn']['model']!r}, which "
                              f"attributes.models also names; rename that model")
    bounds = settings["age_groups"]
    if any(b >= c for b, c in zip(bounds, bounds[1:])):
        raise ConfigError(f"attributes.age_groups: upper bounds must increase strictly; got {bounds}")


# ----------------------------------------------------------------------------------------------
# inputs


HEAD_KINDS = ("linear", "mlp", "ordinal")  # the heads on embeddings compared in attributes_heads


def heads_settings(attributes: dict[str, Any]) -> dict[str, Any]:
    """Splits and heads of the comparison from the filled-in `attributes:` settings: the CNN's
    splits when there is a CNN (the study's targets), else the study's first split."""
    cnn = attributes.get("cnn")
    return {"splits": list(cnn["splits"]) if cnn else list(attributes["splits"][:1]),
            "heads": list(HEAD_KINDS)}
