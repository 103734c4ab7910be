"""Generate and score the all_vs_all protocol of 5,000 images (12.5M pairs), 128-d embeddings.

Each stage runs in a fresh process (spawned), so its peak RSS (resource.getrusage, ru_maxrss)
is its own; the RSS of that process right after its imports is printed beside it, so the
difference is what the stage itself needed. Inputs (an aligned manifest with 500 identities of
10 images, random float32 embeddings) are written beforehand and not timed. Each stage is pinned
to one core; CPU seconds are given beside wall seconds (steadier on a shared machine).
Usage: python benchmarks/bench_all_vs_all.py [--images 5000] [--identities 500] [--dim 128]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path


def one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def write_inputs(folder: Path, n_images: int, n_identities: int, dim: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from maskbench.io.manifests import embedding_schema

    ids = [f"person_{k % n_identities:05d}/image_{k:06d}.jpg" for k in range(n_images)]
    pq.write_table(pa.table({"image_id": ids, "identity": [i.split("/")[0] for i in ids],
                             "status": ["ok"] * n_images}), folder / "aligned.parquet")
    vectors = np.random.default_rng(0).normal(size=(n_images, dim)).astype(np.float32)
    table = pa.Table.from_arrays(
        [pa.array(ids), pa.array(["ok"] * n_images),
         pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim)],
        schema=embedding_schema(dim))
    pq.write_table(table, folder / "embeddings.parquet")


def generate(folder: str) -> tuple[float, float, float, float, dict]:
    one_core()
    from maskbench.stages.pairs import build_pairs

    base = peak_rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    report = build_pairs([f"{folder}/aligned.parquet"], {"kind": "all_vs_all"}, [("unmasked", "unmasked")], 2021,
                         "unused.json", f"{folder}/pairs.parquet", f"{folder}/pairs.json")
    return time.perf_counter() - start, time.process_time() - cpu, base, peak_rss_mb(), report


def score(folder: str) -> tuple[float, float, float, float, dict]:
    one_core()
    from maskbench.stages.score import score_comparison

    base = peak_rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    counts = score_comparison(f"{folder}/pairs.parquet", "unmasked-vs-unmasked",
                              {"unmasked": [f"{folder}/embeddings.parquet"]}, "neg_l2", f"{folder}/scores.parquet")
    return time.perf_counter() - start, time.process_time() - cpu, base, peak_rss_mb(), counts


def in_fresh_process(fn, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--identities", type=int, default=500)
    parser.add_argument("--dim", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write_inputs(Path(tmp), args.images, args.identities, args.dim)
        print(f"all_vs_all: {args.images} images, {args.identities} identities, {args.dim}-d embeddings")
        print(f"  {'stage':10s} {'pairs':>12s} {'wall s':>7s} {'CPU s':>6s} {'RSS after imports MB':>21s} "
              f"{'peak RSS MB':>12s}")
        seconds, cpu, base, peak, report = in_fresh_process(generate, tmp)
        size = os.path.getsize(f"{tmp}/pairs.parquet") / 2**20
        print(f"  {'generate':10s} {report['rows']:12,d} {seconds:7.1f} {cpu:6.1f} {base:21.0f} {peak:12.0f}"
              f"   ({report['genuine']:,} genuine, {size:.0f} MB Parquet)", flush=True)
        seconds, cpu, base, peak, counts = in_fresh_process(score, tmp)
        size = os.path.getsize(f"{tmp}/scores.parquet") / 2**20
        print(f"  {'score':10s} {counts['pairs']:12,d} {seconds:7.1f} {cpu:6.1f} {base:21.0f} {peak:12.0f}"
              f"   ({counts['scored']:,} scored, {size:.0f} MB Parquet)", flush=True)


if __name__ == "__main__":
    main()
