"""Seconds to train a projection head over N cached 128-d embeddings, for each loss, one thread.

Synthetic embeddings: identities of 5 images, each unmasked and under one "mask" (a fixed
low-rank linear corruption plus noise); val is a tenth of the size. Default settings (hidden 512,
32 identities x 4 samples, batches per epoch enough to see every image once) for a few epochs.
"Seconds" is wall time of train_projection_head, including the per-epoch val EER.

    python benchmarks/bench_train_head.py --n 2000 10000 50000 --epochs 3
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

from maskbench.training.train_head import EmbeddingSet, train_projection_head

LOSSES = {
    "supcon": {"kind": "supcon"},
    "arcface": {"kind": "arcface"},
    "arcface_focal": {"kind": "arcface", "focal_gamma": 2.0},
    "triplet_batch_hard": {"kind": "triplet", "mining": "batch_hard"},
    "triplet_semi_hard": {"kind": "triplet", "mining": "semi_hard"},
}
DIM = 128
IMAGES_PER_IDENTITY = 5


def synthetic(n_rows: int, seed: int, prefix: str) -> EmbeddingSet:
    """About ``n_rows`` embeddings: half unmasked, half masked copies of the same images."""
    rng = np.random.default_rng(seed)
    corruption = np.eye(DIM) + 2.0 * np.random.default_rng(0).normal(size=(DIM, 8)) @ \
        np.random.default_rng(1).normal(size=(8, DIM)) / np.sqrt(DIM)
    n_ids = max(2, n_rows // (2 * IMAGES_PER_IDENTITY))
    centres = rng.normal(size=(n_ids, DIM))
    ident = np.repeat(np.arange(n_ids), IMAGES_PER_IDENTITY)
    unmasked = centres[ident] + 0.6 * rng.normal(size=(ident.size, DIM))
    masked = unmasked @ corruption.T + 0.2 * rng.normal(size=unmasked.shape)
    images = [f"{prefix}{i}/{k}" for k, i in enumerate(ident)]
    return EmbeddingSet(
        vectors=np.vstack([unmasked, masked]).astype(np.float32),
        image_id=images * 2,
        identity=[f"{prefix}{i}" for i in ident] * 2,
        variant=["unmasked"] * ident.size + ["surgical"] * ident.size,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[2000, 10000, 50000])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=list(LOSSES))
    args = parser.parse_args()
    logging.disable(logging.INFO)
    torch.set_num_threads(1)
    # warm-up: the first optimiser construction imports much of torch
    warm = synthetic(200, 0, "w")
    train_projection_head(warm, warm, {"loss": LOSSES["supcon"], "epochs": 1, "batches_per_epoch": 1}, seed=0)
    print(f"{'N':>7} {'loss':<20} {'batches':>8} {'seconds':>8} {'s/epoch':>8} {'base EER':>9} {'best EER':>9}")
    for n in args.n:
        train, val = synthetic(n, 1, "t"), synthetic(max(200, n // 10), 2, "v")
        for name in args.losses:
            spec = {"loss": LOSSES[name], "epochs": args.epochs}
            start = time.perf_counter()
            result = train_projection_head(train, val, spec, seed=0, threads=1)
            seconds = time.perf_counter() - start
            batches = result.meta["train"]["batches_per_epoch_used"]
            print(f"{n:>7} {name:<20} {batches:>8} {seconds:>8.2f} {seconds / args.epochs:>8.2f} "
                  f"{result.meta['base_val_eer']:>9.4f} {result.meta['best_val_eer']:>9.4f}", flush=True)


if __name__ == "__main__":
    main()
