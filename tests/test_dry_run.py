"""The workflow plans its whole DAG from any working directory (`--directory`), with every path
taken from the Snakefile's checkout rather than from where snakemake was started."""

from __future__ import annotations

import re

import yaml

from conftest import REPO, snakemake


def job_counts(text: str) -> dict[str, int]:
    """rule -> jobs, from a dry run's "Job stats" table."""
    table = text[text.index("Job stats:"):]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.M) if rule != "total"}


def test_dry_run_plans_the_full_dag_in_another_directory(tmp_path):
    started_in, workdir = tmp_path / "elsewhere", tmp_path / "work"
    started_in.mkdir()
    config = REPO / "config" / "config.yaml"
    out = snakemake(started_in, "-n", "all", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
                    "--configfile", str(config)).stdout
    jobs = job_counts(out)
    cfg = yaml.safe_load(config.read_text())
    shards = sum(d["shards"] for d in cfg["datasets"].values())
    assert jobs["align"] == shards
    assert jobs["mask"] == sum(d["shards"] * len(cfg["masks"]) for d in cfg["datasets"].values())
    assert jobs["table"] == len(cfg["tables"])
    assert {"all", "acquire", "index", "embed", "pairs", "score", "fuse", "coverage", "all_metrics",
            "curve_figures", "models_table"} <= set(jobs)
    # planned in the working directory, with the library files of the checkout as code inputs
    assert f"Working directory: {workdir}" in out
    assert str(REPO / "src" / "maskbench" / "stages" / "align.py") in out
    assert "results/demo/aligned/shard-0.parquet" in out
    assert not any(started_in.iterdir()), "a dry run wrote into the directory it was started in"
