"""Where the embed stage's time goes: the network alone vs the whole stage, per chip.

Aligns ``--n`` LFW-mini faces into a shard (as the align stage stores them), then times, in CPU
milliseconds per chip (``time.process_time``, so a loaded machine distorts little): the torch port
of dlib's ResNet alone on decoded chips, the stage's reading, PNG decoding and output, the whole
``embed_chips`` call, and the fixed cost of a job (importing torch and loading the model, paid
once per embed job: one per model and variant). Also encoding and decoding of chips with the chip
codec (``maskbench.io.chips``) beside the PNG settings chips were stored with before (level 3,
then level 1 run-length), which the align and mask stages pay per chip, and the bytes per chip.

    python benchmarks/bench_embed_stage.py --n 300
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from maskbench.io.atomic import write_table
from maskbench.io.chips import decode_chips, encode_chip

PNG_SETTINGS = {"PNG level 3": [cv2.IMWRITE_PNG_COMPRESSION, 3],
                "PNG level 1 rle": [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
                                    cv2.IMWRITE_PNG_STRATEGY_RLE]}

FIXED_COST = """
import time
t = time.process_time()
from maskbench.models.embed import make_embedder
make_embedder({"kind": "dlib_resnet", "backend": "torch"}, threads=1, cache_dir=%r)
print(time.process_time() - t)
"""


def lfw_chips(data: Path, n: int) -> list[np.ndarray]:
    from maskbench.faces.align import FaceAligner
    from maskbench.io.images import iter_tar_images

    aligner, chips = FaceAligner(upsample=0), []
    for _, rgb in iter_tar_images(data / "lfw-mini" / "lfw-deepfunneled-mini.tgz"):
        result = aligner.align(rgb)
        if result.status == "ok":
            chips.append(result.chip)
        if len(chips) == n:
            break
    return chips


def cpu_ms(fn, n: int, repeat: int = 1) -> tuple[float, object]:
    start = time.process_time()
    for _ in range(repeat):
        out = fn()
    return 1000 * (time.process_time() - start) / (n * repeat), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("MASKBENCH_SHARED_DATA", "../shared/data"))
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    import torch

    torch.set_num_threads(1)
    from maskbench.models.embed import make_embedder
    from maskbench.stages.embed import embed_chips

    chips = lfw_chips(Path(args.data), args.n)
    n = len(chips)
    print(f"{n} LFW-mini chips, 150 px; CPU ms per chip, one thread")
    coders = {name: (lambda c, p=params: cv2.imencode(".png", cv2.cvtColor(c, cv2.COLOR_RGB2BGR), p)[1].tobytes())
              for name, params in PNG_SETTINGS.items()}
    coders["chip codec"] = encode_chip
    for name, encode in coders.items():
        enc_ms, encoded = cpu_ms(lambda f=encode: [f(c) for c in chips], n, repeat=3)
        dec_ms, decoded = cpu_ms(lambda e=encoded: decode_chips(e), n, repeat=3)
        one_ms, _ = cpu_ms(lambda e=encoded: [decode_chips([x]) for x in e], n, repeat=3)
        assert np.array_equal(decoded, np.stack(chips)), name
        print(f"{name:16s} encode {enc_ms:5.2f}  decode {dec_ms:5.2f} (one by one {one_ms:5.2f})  "
              f"{np.mean([len(e) for e in encoded]) / 1e3:5.1f} KB")

    with tempfile.TemporaryDirectory() as tmp:
        cache = str(Path(tmp) / "cache")
        shard = Path(tmp) / "shard.parquet"
        write_table(shard, pa.table({"image_id": [f"c{k:05d}" for k in range(n)], "status": ["ok"] * n,
                                     "chip": [encode_chip(c) for c in chips]}))
        model = {"kind": "dlib_resnet", "backend": "torch", "batch_size": args.batch_size}
        embedder = make_embedder(model, threads=1, cache_dir=cache)
        batch = np.stack(chips)
        embedder.embed(batch)  # warm-up: the network's first call per batch shape sets up its kernels
        net_ms, _ = cpu_ms(lambda: embedder.embed(batch), n)
        read_ms, table = cpu_ms(lambda: pq.read_table(shard, columns=["image_id", "status", "chip"]), n)
        dec_ms, _ = cpu_ms(lambda: decode_chips(table["chip"].to_pylist()), n)
        load_ms, _ = cpu_ms(lambda: make_embedder(model, threads=1, cache_dir=cache), n)
        stage_ms, _ = cpu_ms(lambda: embed_chips([str(shard)], model, 1, str(Path(tmp) / "out.parquet"),
                                                 cache_dir=cache, variant="unmasked"), n)
        fixed = float(subprocess.run([sys.executable, "-c", FIXED_COST % cache], check=True,
                                     capture_output=True, text=True).stdout.split()[-1])
    print(f"network alone (batch {args.batch_size})   {net_ms:6.2f}")
    print(f"stage: read {read_ms:.2f} + decode {dec_ms:.2f} + network, output and model load = {stage_ms:6.2f} "
          f"(model load alone {load_ms:.2f}, so the stage without it {stage_ms - load_ms:6.2f})")
    for shard_size in (n, 1654):
        print(f"per job: import torch + load model {fixed:.2f} s = {1000 * fixed / shard_size:5.2f} ms/chip "
              f"over {shard_size} chips -> stage in a job {stage_ms + 1000 * fixed / shard_size:6.2f}")


if __name__ == "__main__":
    main()
