"""Build the all_vs_all manifest of a set with real masks at RMFRD's scale: 5,000 bare and 2,000
real-masked photos of 500 people, comparisons [unmasked, unmasked], [unmasked, <mask>],
[unmasked, real] and [real, real], impostors sampled to 2 million per pool pair.

Prints wall and CPU seconds, the peak RSS and the rows written. The aligned manifest is written
beforehand and not timed.
Usage: python benchmarks/bench_real_pairs.py [--bare 5000] [--real 2000] [--people 500]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from maskbench.io.manifests import ALIGNED_SCHEMA
from maskbench.stages.pairs import build_pairs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bare", type=int, default=5000)
    parser.add_argument("--real", type=int, default=2000)
    parser.add_argument("--people", type=int, default=500)
    parser.add_argument("--max-impostors", type=int, default=2_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n = args.bare + args.real
        ids = [f"p{k % args.people:05d}/{'real_mask/' if k >= args.bare else ''}i{k:06d}.jpg" for k in range(n)]
        pq.write_table(pa.Table.from_pydict({
            "image_id": ids, "identity": [i.split("/")[0] for i in ids], "status": ["ok"] * n,
            "reason": [None] * n, "detector": [None] * n, "detector_score": [None] * n, "n_faces": [1] * n,
            "landmarks": [None] * n, "chip": [None] * n, "real_mask": [k >= args.bare for k in range(n)],
        }, schema=ALIGNED_SCHEMA), folder / "aligned.parquet")
        (folder / "acquired.json").write_text("{}")
        protocol = {"kind": "all_vs_all", "max_impostors": args.max_impostors, "comparisons": []}
        comparisons = [("unmasked", "unmasked"), ("unmasked", "surgical"), ("unmasked", "real"), ("real", "real")]
        wall, cpu = time.perf_counter(), time.process_time()
        report = build_pairs([str(folder / "aligned.parquet")], protocol, comparisons, 1,
                             str(folder / "acquired.json"), str(folder / "pairs.parquet"), str(folder / "pairs.json"))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        size = (folder / "pairs.parquet").stat().st_size / 1e6
    print(f"{args.bare} bare + {args.real} real photos of {args.people} people: {report['rows']:,} rows "
          f"({size:.1f} MB) in {wall:.1f} s wall, {cpu:.1f} s CPU; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(json.dumps(report["pairs_per_pool"]))


if __name__ == "__main__":
    main()
