"""Try attribute CNN settings on a finished attribute run's chips, minutes per try instead of a
workflow run: each setting's val scores (what the workflow selects on) and its masked test scores
beside the linear head's, on the same split, train variant and test faces.

Reads the workflow's own outputs (index, split, aligned and masked chip shards, the linear head's
metrics) from a results folder made by, e.g.,

    snakemake results/tables/attributes.csv --cores 2 --configfile config/utkface.yaml config/utkface-mini.yaml

and trains each setting as the attributes_cnn stage does (`train_attribute_cnn`, same seed). The
frozen blocks' outputs are computed once per `frozen_blocks` and reused by every setting. Settings
are the config's `attributes.cnn` with the changes given as JSON objects, one per try:

    python benchmarks/tune_attributes_cnn.py '{}' '{"frozen_blocks": 12}' '{"lr": 1e-4, "test_flip": true}'

Choose on the val columns only; the test columns say what a choice made on val is worth.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from maskbench.attributes import cnn as cnn_module
from maskbench.attributes import heads as attr
from maskbench.attributes.cnn import LabelledChips, train_attribute_cnn
from maskbench.attributes.settings import (
    MIXED,
    CnnSpec,
    attribute_settings,
    train_variants,
)
from maskbench.attributes.study import Study, read_labels
from maskbench.config import UNMASKED, masks_for
from maskbench.io.readers import read_chips, split_parts
from maskbench.stages.attributes_cnn import (
    labelled_chips,
    task_labels,
    train_chipset,
    variant_chips,
)


def load_config(paths: list[str]) -> dict:
    config: dict = {}
    for path in paths:
        merge(config, yaml.safe_load(Path(path).read_text()))
    return config


def merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def memoised(function, key, folder: Path | None = None):
    """``function`` computed once per ``key(*args)`` (the frozen blocks' outputs per setting),
    and kept in ``folder`` for later invocations when given."""
    store = {}

    def wrapper(*args, **kwargs):
        k = key(*args, **kwargs)
        if k not in store:
            path = None if folder is None else folder / f"{function.__name__}-{'-'.join(map(str, k))}.pt"
            if path is not None and path.exists():
                store[k] = cnn_module.FeatureCache(**torch.load(path, weights_only=False))
            else:
                store[k] = function(*args, **kwargs)
                if path is not None:
                    folder.mkdir(parents=True, exist_ok=True)
                    torch.save(vars(store[k]), path)
        return store[k]

    return wrapper


def cached_predict(model, data: LabelledChips, cache, batch_size: int = 64) -> dict[str, attr.Prediction]:
    """What ``model.predict(data)`` gives, from the frozen blocks' cached outputs for ``data``."""
    items = [(data.variants[k], k) for k in range(len(data))]
    module, cpu, out = model.network.module, torch.device("cpu"), {}
    for epoch in sorted(set(model.best_epoch.values())):
        module.load_state_dict(model.states[epoch])
        outputs = cnn_module.cached_outputs(model.network, cache, items, batch_size, cpu, model.spec.test_flip)
        for task, best in model.best_epoch.items():
            if best == epoch:
                out[task] = model.coding.decode(task, outputs[task])
    return out


def pooled_scores(predictions: dict, labels: dict[str, np.ndarray], tasks) -> dict[str, float]:
    """Accuracy (MAE for age) over every row."""
    out = {}
    for task in tasks:
        known = cnn_module._known(task, labels[task])
        predicted, truth = predictions[task].predicted[known], labels[task][known]
        out[task] = float(np.mean(np.abs(predicted - truth.astype(np.float64)))) if attr.is_regression(task) \
            else float(np.mean(predicted == truth))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("changes", nargs="*", default=["{}"], help="JSON objects of attributes.cnn keys to change")
    parser.add_argument("--configfile", nargs="+", default=["config/utkface.yaml", "config/utkface-mini.yaml"])
    parser.add_argument("--results", default="results")
    parser.add_argument("--dataset", default="utkface")
    parser.add_argument("--strategy", default="random")
    parser.add_argument("--train", default=MIXED)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log", action="store_true", help="print every epoch")
    parser.add_argument("--cache", help="a folder that keeps the frozen blocks' outputs for later invocations")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.log else logging.WARNING, format="%(message)s", force=True)

    config = load_config(args.configfile)
    settings = attribute_settings(config)
    tasks, groups, seed = settings["tasks"], settings["age_groups"], int(config["seed"])
    base = dict(settings["cnn"]["spec"])
    results = Path(args.results) / args.dataset
    masks = masks_for(config, args.dataset)
    train_on = train_variants(config, args.dataset, args.train)
    by_split = split_parts(results / "splits" / f"{args.strategy}.parquet")
    study = Study(read_labels(results / "index.parquet", groups), by_split, [], groups)
    aligned = sorted(str(p) for p in (results / "aligned").glob("shard-*.parquet"))
    masked = {m: sorted(str(p) for p in (results / "masked" / m).glob("shard-*.parquet")) for m in masks}
    chips = read_chips(aligned, masked, set(by_split["train"]) | set(by_split["val"]) | set(by_split["test"]))
    train = train_chipset(by_split["train"], args.train, train_on, chips)
    train_labels = task_labels(study, tasks, train.image_ids)
    val = labelled_chips(study, tasks, [(i, v) for v in train_on for i in by_split["val"]
                                        if i in variant_chips(chips, v)], chips)
    test_ids = [i for i in by_split["test"] if all(i in variant_chips(chips, v) for v in [UNMASKED, *masks])]
    val_ids = [i for i in by_split["val"] if all(i in variant_chips(chips, v) for v in [UNMASKED, *masks])]
    # every mask type's chips of the paired test (val) images, pooled as the `masked` column
    test = labelled_chips(study, tasks, [(i, m) for m in masks for i in test_ids], chips)
    val_masked = labelled_chips(study, tasks, [(i, m) for m in masks for i in val_ids], chips)

    linear_path = results / "attributes" / "dlib_resnet" / args.strategy / args.train / "metrics.json"
    linear = {}
    if linear_path.exists():
        heads = json.loads(linear_path.read_text())["heads"]["linear"]
        for task in tasks:
            entry = heads[task]["test"]["masked"]
            linear[task] = entry["mae"] if attr.is_regression(task) else entry["accuracy"]
    print(f"train {len(train)} images ({args.train}), val {len(val)} chips, test {len(test_ids)} images x "
          f"{len(masks)} masks; linear head on masked test faces: "
          + ", ".join(f"{t} {linear[t]:.4f}" for t in tasks if t in linear))

    # the frozen blocks' outputs: once per (frozen_blocks, flip setting)
    folder = Path(args.cache) if args.cache else None
    cnn_module.train_cache = memoised(cnn_module.train_cache,
                                      lambda network, data, spec, device: (spec.frozen_blocks, spec.flip), folder)
    original = cnn_module.val_cache
    cnn_module.val_cache = memoised(original, lambda network, data, batch_size, device, mirrored=False: (
        network.module.frozen_blocks, mirrored), folder)

    def test_features(network):  # the masked test chips and their mirror images
        return original(network, test, 64, torch.device("cpu"), True)

    def val_masked_features(network):
        return original(network, val_masked, 64, torch.device("cpu"), True)

    test_features = memoised(test_features, lambda network: (network.module.frozen_blocks,), folder)
    val_masked_features = memoised(val_masked_features, lambda network: (network.module.frozen_blocks,), folder)

    header = f"{'setting':<60} {'min':>5} " + " ".join(f"{'val ' + t:>12}" for t in tasks) + " " + \
        " ".join(f"{'val-m ' + t:>13}" for t in tasks) + " " + \
        " ".join(f"{'test ' + t:>13}" for t in tasks) + "  epochs"
    print(header)
    for change in args.changes:
        spec = CnnSpec.from_dict({**base, **json.loads(change)})
        started = time.perf_counter()
        model = train_attribute_cnn(train, train_labels, val, spec, tasks, groups, seed, threads=args.threads,
                                    device="cpu")
        test_scores = pooled_scores(cached_predict(model, test, test_features(model.network)), test.labels, tasks)
        val_scores = pooled_scores(cached_predict(model, val_masked, val_masked_features(model.network)),
                                   val_masked.labels, tasks)
        minutes = (time.perf_counter() - started) / 60
        per_1000 = model.timing.get("mean_seconds_per_epoch_per_1000_chips")
        print(f"{change:<60} {minutes:>5.1f} " + " ".join(f"{model.val_score[t]:>12.4f}" for t in tasks) + " "
              + " ".join(f"{val_scores[t]:>13.4f}" for t in tasks) + " "
              + " ".join(f"{test_scores[t]:>13.4f}" for t in tasks)
              + f"  {model.best_epoch} last {model.curve[-1]['epoch']}, {per_1000} s/epoch/1000 chips", flush=True)


if __name__ == "__main__":
    main()
