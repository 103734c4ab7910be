"""The workflow plans its whole DAG from any working directory (`--directory`), with every path
taken from the Snakefile's checkout rather than from where snakemake was started."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

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
    # planned in the working directory, the code stamps recording the script and library files of the checkout
    assert f"Working directory: {workdir}" in out
    # (named from the checkout's folder: the stamp does not depend on where the checkout is)
    stamp = (workdir / "results" / "code" / "align.sha256").read_text()
    stamped = [line.split("  ", 1)[1] for line in stamp.splitlines()]
    assert {"workflow/scripts/align.py", "src/maskbench/stages/align.py"} <= set(stamped)
    assert all(name.startswith(("src/maskbench/", "workflow/scripts/")) for name in stamped)
    assert "results/demo/aligned/shard-0.parquet" in out
    assert not any(started_in.iterdir()), "a dry run wrote into the directory it was started in"


# Runs snakemake's command line with inspect.signature wrapped to count, per workflow function (an
# input, params or resources function of a rule), how often its signature is worked out.
COUNTING_SIGNATURES = """
import inspect, sys
from snakemake.cli import main
computed = []
plain_signature = inspect.signature
def signature(func, *args, **kwargs):
    code = getattr(func, "__code__", None)
    if code and code.co_filename.endswith((".smk", "Snakefile")) and "__signature__" not in vars(func):
        computed.append(f"{code.co_filename}:{code.co_firstlineno}")
    return plain_signature(func, *args, **kwargs)
inspect.signature = signature
sys.argv = ["snakemake", *sys.argv[1:]]
try:
    main()
finally:
    import collections
    print("most worked-out signatures:", collections.Counter(computed).most_common(3))
"""


def test_planning_works_out_each_rule_functions_signature_once(tmp_path):
    """Snakemake inspects a rule function's signature each time it calls it (about three times a
    job); the Snakefile gives each function its signature once, so planning cost per job stays low."""
    proc = subprocess.run(
        [sys.executable, "-c", COUNTING_SIGNATURES, "-n", "all", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(REPO / "config" / "config.yaml")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert job_counts(proc.stdout)["score"] > 1  # input and params functions were called for many jobs
    most = re.search(r"^most worked-out signatures: (.*)$", proc.stdout, re.M)
    assert most, proc.stdout[-2000:]
    counts = ast.literal_eval(most[1])
    assert counts, "no rule function's signature was inspected: the check saw nothing"
    assert all(n == 1 for _, n in counts), f"signatures worked out again for each job: {counts}"


def test_a_first_plan_of_a_demo_and_a_real_dataset_finds_both_acquire_stamps(tmp_path):
    """acquire's two code stamps (the demo's, and a real set's without the demo generator) are
    written as the workflow is read: written while the DAG was built, the second one planned in a
    fresh directory was missing from what Snakemake had listed (MissingInputException)."""
    extra = tmp_path / "real.yaml"
    extra.write_text(yaml.safe_dump({"datasets": {"lfw": {
        "layout": "lfw", "shards": 1, "protocols": ["test_pairs"],
        "files": {"images": {"path": "faces.tgz"}, "pairs": {"path": "pairs.txt"}}}}}))
    workdir = tmp_path / "work"
    out = snakemake(tmp_path, "-n", "results/demo/index.parquet", "results/lfw/index.parquet", "--snakefile",
                    str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile",
                    str(REPO / "config" / "config.yaml"), str(extra)).stdout
    assert job_counts(out) == {"acquire": 2, "index": 2}
    assert {p.name for p in (workdir / "results" / "code").glob("acquire*")} == {"acquire.sha256",
                                                                               "acquire_files.sha256"}
