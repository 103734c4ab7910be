"""The workflow end to end: dry run, lint, the default demo run and a run on real LFW faces."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, copy_workflow, snakemake

pytestmark = pytest.mark.slow


def job_counts(dry_run_output: str) -> dict[str, int]:
    """rule -> job count from the 'Job stats' table of a dry run."""
    block = dry_run_output.split("Job stats:", 1)[1]
    counts = {}
    for line in block.splitlines()[3:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
        elif counts:
            break
    return counts


def test_dry_run_lists_every_job_of_the_dag(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    proc = snakemake(work, "-n", "all")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    shards = config["datasets"]["demo"]["shards"]
    n_masks = len(config["masks"])
    n_models = len(config["models"])
    n_comparisons = 1 + n_masks
    counts = job_counts(proc.stdout)
    assert counts == {
        "acquire": 1, "index": 1, "align": shards, "mask": n_masks * shards,
        "embed": n_models * (1 + n_masks) * shards, "pairs": 1,
        "score": n_models * n_comparisons, "metrics": n_models * n_comparisons,
        "curve_figures": 1, "mask_effect_figure": 1, "align_summary": 1, "mask_summary": n_masks,
        "coverage": 1, "table": len(config["tables"]), "all_metrics": 1, "all": 1,
        "total": counts["total"],
    }
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_lint_has_no_findings(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    proc = snakemake(work, "--lint", check=False)
    assert "Lints for" not in proc.stdout, proc.stdout


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("default") / "wf")
    snakemake(work, "--cores", "2", "results/tables/benchmark2.csv")
    return work


def test_default_run_writes_benchmark2_and_a_roc_figure(default_run):
    table = pd.read_csv(default_run / "results/tables/benchmark2.csv", index_col="dataset")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert list(table.index) == list(config["datasets"])
    assert list(table.columns) == list(config["models"])
    values = table.to_numpy(dtype=float)
    assert ((values >= 0) & (values <= 0.5)).all(), table
    assert (default_run / "results/figures/roc_demo.png").stat().st_size > 10_000
    assert (default_run / "results/tables/benchmark2.md").read_text().startswith("# benchmark2")


def test_default_run_is_complete_and_up_to_date(default_run):
    proc = snakemake(default_run, "-n", "results/tables/benchmark2.csv")
    assert "Nothing to be done" in proc.stdout


@pytest.fixture(scope="module")
def lfw_mini_run(tmp_path_factory, shared_data):
    work = copy_workflow(tmp_path_factory.mktemp("lfw") / "wf")
    mini = shared_data / "lfw-mini"
    override = {
        "datasets": {
            "lfw": {
                "shards": 2,
                "masks": ["surgical_blue", "n95_white"],
                "files": {
                    "images": {"path": str(mini / "lfw-deepfunneled-mini.tgz"), "md5": None,
                               "sha256": "5bdb8e9a87fabee45d1373a15f79c9e2fa235968228b7c01a80f32dba2e4bcad"},
                    "pairs": {"path": str(mini / "pairs.txt"), "md5": None},
                },
            }
        }
    }
    (work / "mini.yaml").write_text(yaml.safe_dump(override))
    snakemake(work, "all", "--cores", "2", "--configfile", "config/lfw.yaml", "mini.yaml")
    return work


def test_lfw_mini_real_faces_masks_cost_accuracy(lfw_mini_run):
    metrics = pd.read_csv(lfw_mini_run / "results/tables/all_metrics.csv")
    view = metrics.set_index(["ref_variant", "probe_variant"])["eer"]
    unmasked = view[("unmasked", "unmasked")]
    masked = view[("unmasked", "surgical_blue")]
    print(f"LFW-mini EER unmasked {unmasked:.4f}, unmasked-vs-surgical_blue {masked:.4f}, "
          f"unmasked-vs-n95_white {view[('unmasked', 'n95_white')]:.4f}")
    assert unmasked < 0.05
    assert masked > unmasked
    assert view[("unmasked", "n95_white")] > unmasked
    counts = metrics.set_index(["ref_variant", "probe_variant"])[["n_genuine", "n_impostor"]]
    assert (counts.sum(axis=1) == 240).all()  # every pair of the fixture's pairs.txt was scored


def result_files(work: Path) -> dict[str, bytes]:
    """Every manifest, score file, table and figure of a run (logs and timings excluded)."""
    root = work / "results"
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.parts[len(root.parts)] not in ("logs", "benchmarks", "cache")
    }


def test_two_runs_from_scratch_give_identical_bytes(default_run, tmp_path):
    second = copy_workflow(tmp_path / "wf2")
    snakemake(second, "--cores", "2", "results/tables/benchmark2.csv")
    first_files, second_files = result_files(default_run), result_files(second)
    assert first_files.keys() == second_files.keys()
    differing = [name for name in first_files if first_files[name] != second_files[name]]
    assert not differing, differing
    assert any(name.endswith(".parquet") for name in first_files)


def test_killed_run_resumes_to_the_same_tables(default_run, tmp_path):
    """SIGKILL in the middle of the embed stage, then run again: the tables equal an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    work = copy_workflow(tmp_path / "wf")
    exe = Path(sys.executable).parent / "snakemake"
    proc = subprocess.Popen([str(exe), "--cores", "2", "results/tables/benchmark2.csv"], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    embed_logs = work / "results" / "logs" / "embed"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if embed_logs.exists() and any(embed_logs.rglob("*.log")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # nothing half-written is left under a final name: every Parquet file present can be read
    import pyarrow.parquet as pq

    for path in (work / "results").rglob("*.parquet"):
        pq.read_metadata(path)
    snakemake(work, "--unlock")
    snakemake(work, "--cores", "2", "results/tables/benchmark2.csv")
    for table in ("benchmark2.csv", "benchmark2.md"):
        assert (work / "results/tables" / table).read_bytes() == (default_run / "results/tables" / table).read_bytes()


def test_paper_config_dag_is_complete_before_any_data(tmp_path):
    """The DICTA 2021 config's whole DAG (CelebA at 200 shards) is listed with no data present."""
    import time

    work = copy_workflow(tmp_path / "wf")
    start = time.perf_counter()
    proc = snakemake(work, "-n", "all", "--configfile", "config/paper.yaml")
    seconds = time.perf_counter() - start
    counts = job_counts(proc.stdout)
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    n_datasets = len(config["datasets"])
    shards = sum(d["shards"] for d in config["datasets"].values())
    assert counts["acquire"] == counts["index"] == n_datasets
    assert counts["align"] == shards
    assert counts["mask"] == shards * len(config["masks"])
    assert counts["embed"] == shards * (1 + len(config["masks"])) * len(config["models"])
    print(f"paper config dry run: {counts['total']} jobs in {seconds:.1f} s")
