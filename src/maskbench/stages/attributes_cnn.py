"""The attribute CNN stage: chips of a split in; checkpoint, predictions and metrics out.

The train and val chips are read first (a Parquet filter on image_id) and the network is trained
and selected on them alone; the test chips are read only once training is done. Predictions and
metrics have exactly the embedding heads' format (head kind ``cnn``), so the attribute tables and
figures take a CNN run like any other.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from maskbench.attributes import heads as attr
from maskbench.io.atomic import write_json, write_table
from maskbench.attributes.cnn import (
    CNN_HEAD,
    AttributeCnn,
    LabelledChips,
    save_attribute_cnn,
    train_attribute_cnn,
)
from maskbench.attributes.study import (PREDICTIONS_SCHEMA, Study, chance_level, evaluate_variants, headlines,
                                        read_labels, result_header, val_metric)
from maskbench.io.readers import read_chips, split_parts
from maskbench.attributes.settings import MIXED, CnnSpec
from maskbench.config import UNMASKED
from maskbench.models.dlib_resnet import torch_threads
from maskbench.training.finetune import ChipSet

log = logging.getLogger(__name__)

Chips = tuple[dict[str, bytes], dict[str, dict[str, bytes]]]  # unmasked, mask -> chips (by image_id)


def variant_chips(chips: Chips, variant: str) -> dict[str, bytes]:
    unmasked, masked = chips
    return unmasked if variant == UNMASKED else masked[variant]


def train_chipset(ids: Sequence[str], train: str, train_on: Sequence[str], chips: Chips) -> ChipSet:
    """The train images as finetune.ChipSet, whose draw picks each image's chip per epoch.

    Mixed: the unmasked chip is the base and every mask type an option. One variant: that
    variant's chips are the base and there are no options, so every epoch shows it."""
    if train == MIXED:
        unmasked, masked = chips
        have = [i for i in ids if i in unmasked]
        position = {image_id: k for k, image_id in enumerate(have)}
        options = {m: {position[i]: c for i, c in masked[m].items() if i in position}
                   for m in train_on if m != UNMASKED}
        return ChipSet(have, have, [unmasked[i] for i in have], options)
    (variant,) = train_on
    base = variant_chips(chips, variant)
    have = [i for i in ids if i in base]
    return ChipSet(have, have, [base[i] for i in have], {})


def labelled_chips(study: Study, tasks: Sequence[str], rows: Sequence[tuple[str, str]], chips: Chips) -> LabelledChips:
    """(image, variant) rows with their chips and labels per task (None or NaN where unknown)."""
    ids = [i for i, _ in rows]
    return LabelledChips(ids, [v for _, v in rows], [variant_chips(chips, v)[i] for i, v in rows],
                         task_labels(study, tasks, ids))


def task_labels(study: Study, tasks: Sequence[str], ids: Sequence[str]) -> dict[str, np.ndarray]:
    out = {}
    for task in tasks:
        labelled = set(study.labelled(task, ids))
        known = [i for i in ids if i in labelled]
        values = dict(zip(known, study.target(task, known)))
        missing = np.nan if attr.is_regression(task) else None
        out[task] = np.asarray([values.get(i, missing) for i in ids],
                               dtype=np.float64 if attr.is_regression(task) else object)
    return out


def _subset(prediction: attr.Prediction, keep: np.ndarray) -> attr.Prediction:
    confidence = prediction.confidence
    return attr.Prediction(prediction.predicted[keep], None if confidence is None else confidence[keep])


def _check_masks(masked_paths: dict[str, list[str]], variants: Sequence[str]) -> None:
    missing = [v for v in dict.fromkeys(variants) if v not in (UNMASKED, MIXED) and v not in masked_paths]
    if missing:
        raise ValueError(f"no masked chip shards given for {missing}; given: {sorted(masked_paths)}")


def run_attributes_cnn(split_path: str, index_path: str, aligned_paths: Sequence[str],
                       masked_paths: dict[str, list[str]], train: str, train_on: Sequence[str],
                       test_on: Sequence[str], tasks: Sequence[str], age_groups: Sequence[int],
                       thresholds: Sequence[float], spec: dict[str, Any] | CnnSpec, seed: int, threads: int,
                       predictions_path: str, metrics_path: str, model_path: str,
                       meta: dict[str, Any] | None = None, cache_dir: str | None = None,
                       device: str = "auto", timing_path: str | None = None) -> dict[str, Any]:
    """Fine-tune on the train part under ``train`` (``train_on`` variants: one, or unmasked plus
    masks for mixed), select each task's epoch on the val part under the same variants, then test
    on the test images that have a chip in every ``test_on`` variant, plus the masks pooled.
    ``timing_path``: seconds of the feature cache and of each epoch (per 1,000 chips), kept
    apart from the metrics, whose bytes the config fixes."""
    parsed = spec if isinstance(spec, CnnSpec) else CnnSpec.from_dict(spec)
    _check_masks(masked_paths, [*train_on, *test_on])
    if train != MIXED and len(train_on) != 1:
        raise ValueError(f"train variant {train!r} trains on one variant, not {list(train_on)}")
    by_split = split_parts(split_path)
    study = Study(read_labels(index_path, age_groups), by_split, [], age_groups)

    fit_masks = {m: masked_paths[m] for m in train_on if m != UNMASKED}
    chips = read_chips(list(aligned_paths), fit_masks, set(by_split["train"]) | set(by_split["val"]))
    train_set = train_chipset(by_split["train"], train, train_on, chips)
    val_rows = [(i, v) for v in train_on for i in by_split["val"] if i in variant_chips(chips, v)]
    val = labelled_chips(study, tasks, val_rows, chips)
    log.info("train: %d images (%s); val: %d chips", len(train_set), train, len(val))
    model = train_attribute_cnn(train_set, task_labels(study, tasks, train_set.image_ids), val, parsed, tasks,
                                age_groups, seed, threads=threads, cache_dir=cache_dir, device=device,
                                base_variant=UNMASKED if train == MIXED else train)
    rows = {t: {"train_rows": len(study.labelled(t, train_set.image_ids)),
                "val_rows": len(study.labelled(t, val.image_ids))} for t in tasks}
    del chips, train_set, val
    save_attribute_cnn(model_path, model)

    test_masks = {m: masked_paths[m] for m in test_on if m != UNMASKED}
    chips = read_chips(list(aligned_paths), test_masks, set(by_split["test"]))
    study.test_ids = [i for i in by_split["test"] if all(i in variant_chips(chips, v) for v in test_on)]
    result = result_header(meta, train, train_on, test_on, tasks, [CNN_HEAD], seed, age_groups, study)
    result["chance"] = {task: chance_level(study, task) for task in tasks}
    columns: dict[str, list] = {name: [] for name in PREDICTIONS_SCHEMA.names}
    with torch_threads(threads):
        result["heads"][CNN_HEAD] = evaluate_cnn(model, study, test_on, chips, thresholds, rows, columns, device)
    result["training"] = {"spec": parsed.to_dict(), "device": model.device, "curve": model.curve}
    write_table(predictions_path, pa.Table.from_pydict(columns, schema=PREDICTIONS_SCHEMA))
    write_json(metrics_path, result)
    if timing_path is not None:
        write_json(timing_path, {**(meta or {}), "train_variant": train, **model.timing})
    return result


def evaluate_cnn(model: AttributeCnn, study: Study, test_on: Sequence[str], chips: Chips,
                 thresholds: Sequence[float], rows: dict[str, dict[str, int]],
                 columns: dict[str, list], device: str = "auto") -> dict[str, Any]:
    """task -> the heads' metrics entry for the CNN on the paired test images under every variant."""
    tasks = model.coding.tasks
    outputs = {}
    for variant in test_on:
        data = LabelledChips(list(study.test_ids), [variant] * len(study.test_ids),
                             [variant_chips(chips, variant)[i] for i in study.test_ids], {})
        outputs[variant] = model.predict(data, device=device)
    entries: dict[str, Any] = {}
    for task in tasks:
        tested = study.labelled(task, study.test_ids)
        labelled = set(tested)
        keep = np.array([i in labelled for i in study.test_ids], dtype=bool)
        predictions = {v: _subset(outputs[v][task], keep) for v in test_on}
        entries[task] = {"params": {"epoch": model.best_epoch[task]}, "val_score": model.val_score[task],
                         "val_metric": val_metric(task), **rows[task],
                         "test": evaluate_variants(study, CNN_HEAD, task, tested, predictions, thresholds, columns)}
        log.info("%s/%s (epoch %d): %s", CNN_HEAD, task, model.best_epoch[task], headlines(task, entries[task]["test"]))
    return entries
