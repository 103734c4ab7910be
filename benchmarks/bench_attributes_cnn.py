"""Time of one training epoch of the attribute CNN: dlib's face ResNet (from dlib's weights) and
ResNet-50 (random init: the ImageNet weights are not shipped; the time is the same).

The chips are synthetic demo faces, aligned from their exact landmarks, each with several mask
types painted on, and random sex, race and age labels; the run trains on `mixed`, so every epoch
draws masked and unmasked chips as a real run does. Only the training pass is timed (decoding,
augmentation, forward, backward and optimizer step of all four task outputs), not the val pass.
Wall time and process CPU time are both printed; on a shared machine CPU time is the fairer.
With ``--frozen-blocks N`` (dlib_resnet) the first N residual blocks are frozen: the one-off cost
of caching their output (every chip, each mask type and its mirror image) is printed per chip,
and the epoch runs on the cache, as `attributes.cnn.frozen_blocks` trains.

    python benchmarks/bench_attributes_cnn.py --n 1000 --threads 1 2 --frozen-blocks 0 13
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from maskbench.attributes import heads as attr
from maskbench.attributes.cnn import TaskCoding, build_network, train_cache, train_epoch
from maskbench.attributes.settings import CnnSpec
from maskbench.io.chips import encode_chip
from maskbench.faces.demo_chips import demo_chips
from maskbench.training.finetune import ChipSet

MASKS = ["surgical_blue", "n95_white", "cloth_black"]


def make_data(n: int, seed: int = 0) -> tuple[ChipSet, dict[str, np.ndarray]]:
    chips = demo_chips(-(-n // 10), 10, MASKS, seed=seed)[:n]
    data = ChipSet(
        [c.image_id for c in chips], [c.identity for c in chips], [encode_chip(c.chip) for c in chips],
        {m: {i: encode_chip(c.masked[m]) for i, c in enumerate(chips)} for m in MASKS},
    )
    rng = np.random.default_rng(seed)
    age = rng.integers(1, 90, n)
    labels = {"sex": rng.choice(attr.SEX_CLASSES, n).astype(object),
              "race": rng.choice(attr.RACE_CLASSES, n).astype(object),
              "age": age.astype(np.float64),
              "age_group": np.asarray([attr.age_group(a) for a in age], dtype=object)}
    return data, labels


def time_epoch(data: ChipSet, labels: dict[str, np.ndarray], spec: CnnSpec,
               threads: int) -> tuple[float, float, dict, tuple[float, float, int] | None]:
    """(wall seconds, CPU seconds, mean loss per task) of one epoch, after one warm-up batch, and
    with frozen blocks (wall, CPU seconds, chips) of filling the feature cache first."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    coding = TaskCoding.fit(attr.TASKS, attr.DEFAULT_AGE_GROUPS, labels)
    targets = {t: coding.encode(t, labels[t]) for t in attr.TASKS}
    network = build_network(spec, coding)
    params = network.module.trainable() + list(network.module.heads.parameters())
    optimizer = torch.optim.Adam(params, lr=spec.lr)
    device = torch.device("cpu")
    cache, cached = None, None
    if spec.frozen_blocks:
        wall, cpu = time.perf_counter(), time.process_time()
        cache = train_cache(network, data, spec, device)
        cached = (time.perf_counter() - wall, time.process_time() - cpu, cache.chips)
    k = spec.batch_size
    if cache is None:
        warm = ChipSet(data.image_ids[:k], data.identities[:k], data.unmasked[:k], {})
        train_epoch(network, optimizer, coding, warm, {t: v[:k] for t, v in targets.items()}, spec, 0, 0, device)
    wall, cpu = time.perf_counter(), time.process_time()
    stats = train_epoch(network, optimizer, coding, data, targets, spec, 1, 0, device, cache=cache)
    return time.perf_counter() - wall, time.process_time() - cpu, stats["loss"], cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="training chips")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--archs", nargs="+", default=["dlib_resnet", "resnet50"], choices=["dlib_resnet", "resnet50"])
    parser.add_argument("--input-size", type=int, default=224, help="resnet50 input size (the paper's 224)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--frozen-blocks", type=int, nargs="+", default=[0, 13],
                        help="dlib_resnet: blocks frozen and cached (0: the whole network trains)")
    args = parser.parse_args()

    started = time.perf_counter()
    data, labels = make_data(args.n)
    print(f"{len(data)} chips, masks {MASKS} drawn per epoch with the unmasked chip "
          f"(made in {time.perf_counter() - started:.1f} s); batch {args.batch_size}, tasks {list(attr.TASKS)}")
    print(f"{'arch':<12} {'px':>4} {'frozen':>6} {'threads':>7} {'epoch s':>9} {'cpu s':>9} {'chips/s':>8} "
          f"{'s/1000 chips':>12} {'cache cpu ms/chip':>17}")
    for arch in args.archs:
        for frozen in args.frozen_blocks if arch == "dlib_resnet" else [0]:
            spec = CnnSpec.from_dict({"arch": arch, "pretrained": arch == "dlib_resnet", "batch_size": args.batch_size,
                                      "frozen_blocks": frozen,
                                      **({"input_size": args.input_size} if arch == "resnet50" else {})})
            for threads in args.threads:
                wall, cpu, _, cached = time_epoch(data, labels, spec, threads)
                size = args.input_size if arch == "resnet50" else 150
                cache = f"{1000 * cached[1] / cached[2]:>17.1f}" if cached else f"{'-':>17}"
                print(f"{arch:<12} {size:>4} {frozen:>6} {threads:>7} {wall:>9.1f} {cpu:>9.1f} {len(data) / wall:>8.1f} "
                      f"{1000 * wall / len(data):>12.1f} {cache}", flush=True)


if __name__ == "__main__":
    main()
