"""Face-embedding throughput per CPU core: the torch port of dlib's ResNet vs dlib itself.

Both run on the same 150 px chips: aligned LFW faces when the shared fixture is found, else random
pixels (the forward pass costs the same whatever the content). "Per core" divides by the process
CPU time, which also counts every thread, so it stays fair when the machine is shared.

    python benchmarks/bench_embed.py --n 200 --threads 1
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from maskbench.models.dlib_resnet import DlibResNetEmbedder, load_dlib_resnet
from maskbench.io.model_files import model_path

LFW_TARBALL = Path("lfw-mini") / "lfw-deepfunneled-mini.tgz"


def find_lfw() -> Path | None:
    """The shared LFW fixture beside the repo, else under $MASKBENCH_SHARED_DATA."""
    roots = [Path(__file__).resolve().parents[2] / "shared" / "data"]
    if os.environ.get("MASKBENCH_SHARED_DATA"):
        roots.append(Path(os.environ["MASKBENCH_SHARED_DATA"]))
    return next((r / LFW_TARBALL for r in roots if (r / LFW_TARBALL).is_file()), None)


def lfw_chips(tarball: Path, n: int) -> np.ndarray:
    """Up to n 150 px chips aligned as dlib does (HOG detector, 68 landmarks, get_face_chip)."""
    from maskbench.faces.align import FaceAligner
    from maskbench.io.images import iter_tar_images

    aligner = FaceAligner(upsample=0)
    chips = []
    for _, rgb in iter_tar_images(tarball):
        result = aligner.align(rgb)
        if result.status == "ok":
            chips.append(result.chip)
        if len(chips) == n:
            break
    return np.stack(chips)


def make_chips(n: int) -> tuple[np.ndarray, str]:
    tarball = find_lfw()
    if tarball is not None:
        chips = lfw_chips(tarball, n)
        if len(chips) == n:
            return chips, f"aligned LFW chips from {tarball}"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 150, 150, 3), dtype=np.uint8), "random pixels"


def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float, float]:
    """Result, wall seconds and process CPU seconds (all threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def report(name: str, n: int, wall: float, cpu: float) -> float:
    per_core = n / cpu
    print(
        f"{name:<6} {n / wall:8.1f} img/s wall  {per_core:8.1f} img/s per core"
        f"  ({1e3 * cpu / n:.1f} ms CPU/img)"
    )
    return per_core


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200, help="number of chips (default 200)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import dlib

    chips, source = make_chips(args.n)
    print(f"{args.n} chips ({source}); torch {torch.__version__} with {args.threads} thread(s), "
          f"dlib {dlib.__version__} (CUDA {dlib.DLIB_USE_CUDA}, single-threaded CPU)")

    torch.set_num_threads(args.threads)
    embedder = DlibResNetEmbedder(load_dlib_resnet(), device="cpu")
    embedder.embed_chips(chips[: args.batch_size], args.batch_size)  # warm-up
    ours, wall, cpu = timed(lambda: embedder.embed_chips(chips, args.batch_size))
    torch_rate = report("torch", args.n, wall, cpu)

    net = dlib.face_recognition_model_v1(str(model_path("face_recognition_resnet")))
    net.compute_face_descriptor(list(chips[:2]))  # warm-up
    ref, wall, cpu = timed(lambda: np.array(net.compute_face_descriptor(list(chips)), np.float32))
    dlib_rate = report("dlib", args.n, wall, cpu)

    print(f"ratio  torch/dlib per core: {torch_rate / dlib_rate:.1f}x")
    print(f"check  max |torch - dlib| = {np.abs(ours - ref).max():.2e}")


if __name__ == "__main__":
    main()
