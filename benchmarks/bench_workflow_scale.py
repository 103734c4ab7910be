"""The LFW benchmark at LFW's size: wall time, core-seconds, peak memory and where they go.

Builds an LFW-sized set (default 13,233 images, as LFW deep-funneled) by repeating LFW-mini
(``../shared/data/lfw-mini``: 602 images of 220 people) under new identity names (copy k of
``Name`` is ``Name_x<k>``, every copy after the first mirrored left-right so it is not the same
photo), with a View 2 pair list made of LFW-mini's pairs renamed per copy (two folds per copy).
Then runs ``snakemake all --cores N`` with ``config/lfw.yaml`` on it, in a work folder of its own,
and prints wall seconds, core-seconds (CPU of every process the run started: exact, from the
kernel's accounting of waited-for children), peak memory (the largest sum of resident memory of
the run's processes, sampled) and a table per stage (job script) of jobs and CPU seconds, from
sampling the run's processes every ``--poll`` seconds (a job shorter than that may be missed;
the remainder is listed as "unattributed"), with the largest resident memory sampled of one of the
stage's processes ("max GB": which stage sets the peak).

The numbers of the tables mean nothing (a person's copies are mirrored photos of one person):
only the time is measured. It takes long at full size (20 minutes or more on 2 cores): pass
``--images`` for a smaller run. Never part of the tests.

    python benchmarks/bench_workflow_scale.py --images 3000 --cores 2 --workdir /tmp/lfw-scale
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SCRIPT = re.compile(r"tmp[^/]*?\.(\w+)\.py$")


def build_set(mini: Path, images: int, out: Path) -> tuple[Path, Path, int, int]:
    """Repeat LFW-mini's folder under new names until ``images`` photos; returns (image folder,
    pairs file, images written, people)."""
    root = out / "images" / "lfw-deepfunneled"
    done = out / f"built-{images}"
    if done.exists():  # the same set as last time: kept, so Snakemake resumes where it stopped
        return root.parent, out / "pairs.txt", images, len(list(root.iterdir()))
    if root.exists():
        shutil.rmtree(root)
    with tarfile.open(mini / "lfw-deepfunneled-mini.tgz") as tf:
        members = sorted((m for m in tf.getmembers() if m.isfile() and m.name.endswith(".jpg")),
                         key=lambda m: m.name)
        photos = [(Path(m.name).parent.name, Path(m.name).name, tf.extractfile(m).read()) for m in members]
    written, people, copy = 0, set(), 0
    while written < images:
        for person, name, data in photos:
            if written == images:
                break
            new = person if copy == 0 else f"{person}_x{copy}"
            folder = root / new
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / name.replace(person, new, 1)
            if copy == 0:
                target.write_bytes(data)
            else:
                img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                cv2.imwrite(str(target), img[:, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            written += 1
            people.add(new)
        copy += 1
    pairs = out / "pairs.txt"
    lines = (mini / "pairs.txt").read_text().splitlines()
    n_folds, per_fold = (int(v) for v in lines[0].split())
    body, complete = [], 0
    existing = {p.name for p in root.iterdir()}
    for k in range(copy):
        rename = (lambda n, k=k: n if k == 0 else f"{n}_x{k}")
        block = []
        for line in lines[1:]:
            f = line.split("\t")
            f = [rename(f[0]), f[1], f[2]] if len(f) == 3 else [rename(f[0]), f[1], rename(f[2]), f[3]]
            block.append(f)
        names = {f[0] for f in block} | {f[2] for f in block if len(f) == 4}
        if not names <= existing:
            break  # a partial last copy: its pairs would name missing photos
        body += ["\t".join(f) for f in block]
        complete += 1
    if not complete:
        raise SystemExit(f"--images {images} is less than one copy of LFW-mini ({len(photos)} photos): "
                         "its View 2 pair list would be empty")
    pairs.write_text(f"{n_folds * complete}\t{per_fold}\n" + "\n".join(body) + "\n")
    for stale in out.glob("built-*"):
        stale.unlink()
    done.touch()
    return root.parent, pairs, written, len(people)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[ppid].append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def sample(pid: int) -> tuple[float, str, int] | None:
    """(CPU seconds, label, resident bytes) of one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    cpu = (int(stat[11]) + int(stat[12])) / CLK
    rss = int(stat[21]) * PAGE
    args = [a.decode(errors="replace") for a in cmd if a]
    if not args:
        return cpu, "?", rss  # exiting: its label was taken while it ran
    label = "snakemake (scheduler)" if "snakemake" in args[1:3] or args[0].endswith("snakemake") else None
    for a in args:
        m = SCRIPT.search(a)
        if m:
            label = m.group(1)
    if label is None:
        label = Path(args[1]).name if len(args) > 1 else Path(args[0]).name
    return cpu, label, rss


def run(workdir: Path, configs: list[str], cores: int, poll: float, target: str, timeout: float | None) -> dict:
    cmd = [sys.executable, "-m", "snakemake", target, "--cores", str(cores), "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--rerun-incomplete", "--configfile", *configs, "--quiet", "rules"]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = open(workdir / "snakemake.log", "w")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    last: dict[int, tuple[float, str, int]] = {}  # pid: (CPU s, label, largest resident bytes sampled)
    peak, stopped = 0, False
    while proc.poll() is None:
        if timeout and not stopped and time.perf_counter() - start > timeout:
            proc.terminate()  # snakemake stops its jobs; the numbers so far are printed, marked partial
            stopped = True
        total = 0
        for p in descendants(proc.pid):
            s = sample(p)
            if s:
                label = s[1] if s[1] != "?" or p not in last else last[p][1]
                last[p] = (s[0], label, max(s[2], last[p][2] if p in last else 0))
                total += s[2]
        peak = max(peak, total)
        time.sleep(poll)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    log.close()
    if proc.returncode and not stopped:
        raise SystemExit(f"snakemake failed (exit {proc.returncode}); see {workdir / 'snakemake.log'}")
    core_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stages: dict[str, list] = defaultdict(lambda: [0, 0.0, 0])  # jobs, CPU s, largest process's resident bytes
    for cpu, label, rss in last.values():
        stages[label][0] += 1
        stages[label][1] += cpu
        stages[label][2] = max(stages[label][2], rss)
    done = re.findall(r"(\d+) of (\d+) steps", (workdir / "snakemake.log").read_text())
    return {"wall": wall, "core_s": core_s, "peak": peak, "max_rss": after.ru_maxrss * 1024, "stages": stages,
            "stopped": stopped, "steps": done[-1] if done else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("MASKBENCH_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--images", type=int, default=13233, help="images of the set (default: LFW's 13,233)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", default="results-scale", help="work folder (results go under it)")
    parser.add_argument("--config", action="append", default=None,
                        help="config file(s) before the generated override (default config/lfw.yaml)")
    parser.add_argument("--target", default="all")
    parser.add_argument("--timeout", type=float, default=None, help="stop the run after this many seconds "
                        "and print the numbers so far, marked partial")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between samples of the run's processes")
    args = parser.parse_args()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    folder, pairs, n, people = build_set(Path(args.data) / "lfw-mini", args.images, workdir / "data")
    override = workdir / "scale.yaml"
    override.write_text(
        "datasets:\n  lfw:\n    files:\n"
        f"      images: {{path: {folder}, md5: null}}\n"
        f"      pairs: {{path: {pairs}, md5: null}}\n")
    print(f"set: {n} images of {people} people in {folder} ({time.perf_counter() - start:.0f} s to build)")
    configs = [str(REPO / c) for c in (args.config or ["config/lfw.yaml"])] + [str(override)]
    result = run(workdir, configs, args.cores, args.poll, args.target, args.timeout)
    if result["stopped"]:
        steps = "/".join(result["steps"]) if result["steps"] else "?"
        print(f"PARTIAL: stopped after {args.timeout:.0f} s with {steps} jobs done")
    print(f"snakemake {args.target} --cores {args.cores} --configfile {' '.join(Path(c).name for c in configs)}")
    print(f"wall {result['wall']:.0f} s, {result['core_s']:.0f} core-s, peak memory {result['peak'] / 2**30:.2f} GB "
          f"(largest process {result['max_rss'] / 2**30:.2f} GB)")
    print(f"{'stage (job script)':24s} {'jobs':>5s} {'CPU s':>8s} {'share':>6s} {'max GB':>7s}")
    attributed = 0.0
    for label, (jobs, cpu, rss) in sorted(result["stages"].items(), key=lambda kv: -kv[1][1]):
        attributed += cpu
        print(f"{label:24s} {jobs:5d} {cpu:8.1f} {cpu / result['core_s']:6.1%} {rss / 2**30:7.2f}")
    rest = result["core_s"] - attributed
    print(f"{'unattributed':24s} {'':5s} {rest:8.1f} {rest / result['core_s']:6.1%}")


if __name__ == "__main__":
    main()
