"""Time of one fine-tuning epoch: dlib's ResNet (from dlib's weights) and ResNet-50 (random init).

The chips are synthetic demo faces, aligned from their exact landmarks, each with several mask
types painted on, so every epoch mixes masked and unmasked chips as a real run does. Only the
training pass is timed (decoding, augmentation, forward, backward, optimizer step), not the val
EER. Wall time and process CPU time are both printed; on a shared machine CPU time is the fairer.

    python benchmarks/bench_finetune.py --n 1000 --threads 1 2
"""

from __future__ import annotations

import argparse
import time

import torch

from maskbench.io.chips import encode_chip
from maskbench.faces.demo_chips import demo_chips
from maskbench.training.finetune import ChipSet, FinetuneSpec, _labels, build_model, make_optimizer, train_epoch
from maskbench.training.losses import make_loss

MASKS = ["surgical_blue", "n95_white", "cloth_black"]
SPECS = {
    "dlib_resnet": {"arch": "dlib_resnet"},
    "resnet50": {"arch": "resnet50", "pretrained": False, "dim": 128},
}


def make_chipset(n: int, per_identity: int, seed: int = 0) -> ChipSet:
    chips = demo_chips(-(-n // per_identity), per_identity, MASKS, seed=seed)[:n]
    return ChipSet(
        [c.image_id for c in chips], [c.identity for c in chips], [encode_chip(c.chip) for c in chips],
        {m: {i: encode_chip(c.masked[m]) for i, c in enumerate(chips)} for m in MASKS},
    )


def time_epoch(data: ChipSet, arch: str, threads: int, batch_size: int, loss: str) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, mean loss) of one epoch, after one warm-up batch."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = FinetuneSpec.from_dict({**SPECS[arch], "loss": {"kind": loss}, "batch_size": batch_size,
                                   "lr": 1e-4, "epochs": 1})
    backbone = build_model(spec)
    labels, names = _labels(data)
    loss_fn = make_loss(spec.loss, backbone.dim, len(names))
    optimizer = make_optimizer(spec, list(backbone.module.parameters()) + list(loss_fn.parameters()))
    device = torch.device("cpu")
    warm = ChipSet(data.image_ids[:batch_size], data.identities[:batch_size], data.unmasked[:batch_size], {})
    train_epoch(backbone, loss_fn, optimizer, warm, labels[:batch_size], spec, 0, 0, device)
    wall, cpu = time.perf_counter(), time.process_time()
    stats = train_epoch(backbone, loss_fn, optimizer, data, labels, spec, 1, 0, device)
    return time.perf_counter() - wall, time.process_time() - cpu, stats.loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="training chips")
    parser.add_argument("--per-identity", type=int, default=10, help="images per synthetic person")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--archs", nargs="+", default=list(SPECS), choices=list(SPECS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--loss", default="supcon", choices=["supcon", "arcface", "triplet"])
    args = parser.parse_args()

    started = time.perf_counter()
    data = make_chipset(args.n, args.per_identity)
    print(f"{len(data)} chips of {len(set(data.identities))} synthetic people, masks {MASKS} "
          f"(made in {time.perf_counter() - started:.1f} s); batch {args.batch_size}, loss {args.loss}")
    print(f"{'arch':<12} {'threads':>7} {'epoch s':>9} {'cpu s':>9} {'chips/s':>8} {'cpu ms/chip':>11} {'loss':>7}")
    for arch in args.archs:
        for threads in args.threads:
            wall, cpu, loss = time_epoch(data, arch, threads, args.batch_size, args.loss)
            print(f"{arch:<12} {threads:>7} {wall:>9.1f} {cpu:>9.1f} {len(data) / wall:>8.1f} "
                  f"{1000 * cpu / len(data):>11.1f} {loss:>7.3f}", flush=True)


if __name__ == "__main__":
    main()
