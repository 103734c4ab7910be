"""Time `snakemake -n all` (parse the workflow and plan the whole DAG) for the shipped configs.

Each config is planned in a fresh empty working directory (`--directory`), so every job of the
DAG is listed, as on a first run. Prints the best of N runs, wall and CPU (the snakemake process
and its children), per config.

    python benchmarks/bench_dry_run.py            # demo, LFW (+ lfw-mini), paper; best of 3
    python benchmarks/bench_dry_run.py --repeat 5
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "demo (config/config.yaml)": ["config/config.yaml"],
    "LFW (config/lfw.yaml)": ["config/lfw.yaml"],
    "LFW-mini (lfw.yaml + lfw-mini.yaml)": ["config/lfw.yaml", "config/lfw-mini.yaml"],
    "paper (config/paper.yaml)": ["config/paper.yaml"],
}


def snakemake_exe() -> str:
    exe = Path(sys.executable).parent / "snakemake"
    return str(exe) if exe.exists() else "snakemake"


def dry_run(configs: list[str]) -> tuple[float, float, int]:
    """(wall s, CPU s, jobs) of one `snakemake -n all` in a fresh working directory."""
    with tempfile.TemporaryDirectory() as workdir:
        cmd = [snakemake_exe(), "-n", "all", "--snakefile", str(REPO / "Snakefile"), "--directory", workdir,
               "--configfile", *(str(REPO / c) for c in configs)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}")
    total = re.search(r"^total\s+(\d+)", proc.stdout, re.M)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, int(total[1]) if total else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per config; the best is printed")
    args = parser.parse_args()
    print(f"{'config':40s} {'jobs':>7s} {'wall s':>8s} {'CPU s':>8s}   (best of {args.repeat})")
    for name, configs in CONFIGS.items():
        runs = [dry_run(configs) for _ in range(args.repeat)]
        wall = min(r[0] for r in runs)
        cpu = min(r[1] for r in runs)
        print(f"{name:40s} {runs[0][2]:7d} {wall:8.2f} {cpu:8.2f}", flush=True)


if __name__ == "__main__":
    main()
