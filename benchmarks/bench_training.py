"""Seconds per epoch per 1,000 training chips for each trainable model kind on this CPU.

- ``projection``: a head over cached 128-d embeddings (one embedding row = one chip), supcon loss,
  default settings, the per-epoch val EERs (masked and unmasked) included; synthetic embeddings.
- ``finetune dlib_resnet``: dlib's ResNet from dlib's weights, 150 px chips.
- ``finetune resnet50``: ResNet-50 (random init, so no weights file is needed; the cost is the
  same), 224 px input, a 128-d projection.

Fine-tuning is timed on synthetic demo chips with mask types painted on (see
bench_finetune.py), training pass only. Wall time and process CPU time are both printed; on a
shared machine CPU time is the fairer.

    python benchmarks/bench_training.py --chips 256 --rows 20000 --threads 1
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_finetune import make_chipset, time_epoch  # noqa: E402
from bench_train_head import synthetic  # noqa: E402

from maskbench.training.train_head import train_projection_head  # noqa: E402


def head_epoch(rows: int, threads: int, epochs: int) -> tuple[float, float, int]:
    """(wall s, CPU s) per epoch and the number of training rows."""
    train, val = synthetic(rows, 0, "t"), synthetic(max(200, rows // 10), 1, "v")
    spec = {"loss": {"kind": "supcon"}, "epochs": epochs}
    wall, cpu = time.perf_counter(), time.process_time()
    train_projection_head(train, val, spec, seed=0, threads=threads)
    return (time.perf_counter() - wall) / epochs, (time.process_time() - cpu) / epochs, len(train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chips", type=int, default=256, help="fine-tuning chips per epoch")
    parser.add_argument("--rows", type=int, default=20000, help="projection head embedding rows")
    parser.add_argument("--epochs", type=int, default=3, help="projection head epochs to average")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--kinds", nargs="+", default=["projection", "dlib_resnet", "resnet50"],
                        choices=["projection", "dlib_resnet", "resnet50"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}; seconds per epoch per 1,000 chips (wall / CPU)")
    print(f"{'model kind':<22} {'chips':>7} {'epoch s':>9} {'wall s/1k':>10} {'cpu s/1k':>9}")
    data = None
    for kind in args.kinds:
        if kind == "projection":
            wall, cpu, n = head_epoch(args.rows, args.threads, args.epochs)
            name = "projection (supcon)"
        else:
            if data is None:
                data = make_chipset(args.chips, 8)
            wall, cpu, _ = time_epoch(data, kind, args.threads, args.batch_size, "supcon")
            n, name = len(data), f"finetune {kind}"
        print(f"{name:<22} {n:>7} {wall:>9.2f} {1000 * wall / n:>10.2f} {1000 * cpu / n:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
