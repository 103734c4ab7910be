"""The workflow end to end: dry run, lint, the default demo run and a run on real LFW faces."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    from maskbench.config import models_of_kind

    work = copy_workflow(tmp_path / "wf")
    proc = snakemake(work, "-n", "all")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    shards = config["datasets"]["demo"]["shards"]
    n_masks = len(config["masks"])
    n_variants = 1 + n_masks
    n_comparisons = 1 + n_masks
    chip_models = models_of_kind(config, "dlib_resnet")
    heads = models_of_kind(config, "projection")
    ensembles = models_of_kind(config, "ensemble")
    assert chip_models and heads and ensembles  # the default config shows every way to a score
    # the ensemble's members are also scored on the val pairs that fix its normalisation
    members = {m for e in ensembles for m in config["models"][e]["members"]}
    counts = job_counts(proc.stdout)
    assert counts == {
        "acquire": 1, "index": 1, "align": shards, "mask": n_masks * shards, "split": 1,
        # one embed / project job per model and variant, whatever the shard count
        "embed": len(chip_models) * n_variants, "pairs": 2,
        "train_head": len(heads), "training_figure": len(heads),
        "project": len(heads) * n_variants,
        # a score or fuse job writes its comparison's metrics too (a metrics job is for imported scores)
        "score": (len(chip_models) + len(heads)) * n_comparisons + len(members),
        "fuse": len(ensembles) * n_comparisons,
        "curve_figures": 1, "mask_effect_figure": 1, "align_summary": 1, "copies": 1, "mask_summary": n_masks,
        "coverage": 1, "table": len(config["tables"]), "all_metrics": 1, "all": 1,
        # 1:N search: one gallery/probe manifest, one search per model with embeddings and probe variant
        "identification_protocol": 1, "identify": (len(chip_models) + len(heads)) * n_comparisons,
        "identification_table": 1, "models_table": 1, "training_time": 1,
        "total": counts["total"],
    }
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    # an ensemble's z-normalisation reads its members' val-pair scores, never the tested pairs'
    fuse_inputs = re.findall(r"rule fuse:\n\s+input: (.*)\n\s+output: (.*)", proc.stdout)
    assert len(fuse_inputs) == counts["fuse"]
    for inputs, outputs in fuse_inputs:
        scores_out, metrics_out = sorted(outputs.split(", "), key=lambda p: p.endswith(".json"))
        assert "/metrics/" in metrics_out and metrics_out.endswith(".json"), outputs
        model, _, comparison = scores_out.rsplit("/", 3)[1:]
        # the members' scores (the ensemble's own are its metrics' baseline and validation inputs)
        scores = [p for p in inputs.split(", ") if "/scores/" in p and f"/scores/{model}/" not in p]
        tested = [p for p in scores if "/test_pairs/" in p]
        assert all(p.endswith("/" + comparison) for p in tested), (outputs, tested)
        assert len(tested) == len(members) and len(scores) == 2 * len(members)
        assert all("/val_pairs/unmasked-vs-unmasked.parquet" in p for p in scores if p not in tested)


def test_jobs_run_the_checkouts_library_not_an_installed_one(tmp_path):
    """The stamps record the checkout's library, so its jobs must run that one, not a maskbench
    installed from elsewhere (here the tested repository's own install, without this edit)."""
    work = copy_workflow(tmp_path / "wf")
    stage = work / "src/maskbench/stages/acquire.py"
    said = 'log.info("generated the demo dataset: %s", summary)'
    assert said in stage.read_text()
    stage.write_text(stage.read_text().replace(said, 'log.info("generated the demo dataset here: %s", summary)'))
    snakemake(work, "--cores", "1", "resources/raw/demo/acquired.json")
    assert "generated the demo dataset here:" in (work / "results/logs/acquire/demo.log").read_text()


def test_lint_has_no_findings(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    proc = snakemake(work, "--lint", check=False)
    found = set()
    for block in re.split(r"(?m)^Lints for ", proc.stdout)[1:]:
        subject = block.split(" (", 1)[0].removeprefix("rule ")
        found |= {(subject, title) for title in re.findall(r"(?m)^\s+\* (.+?):$", block)}
    assert not found, proc.stdout
    assert "Lints for" not in proc.stdout or found, proc.stdout  # a lint block whose title was not parsed


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
    # the pairs jobs read the dataset's copies file, found once, rather than every chip again
    logs = sorted((default_run / "results/logs/pairs").rglob("*.log"))
    assert logs and (default_run / "results/demo/aligned/copies.json").is_file()
    assert not [p for p in logs if "no copies file given" in p.read_text()]


def test_a_finished_run_stays_up_to_date_whichever_interpreter_path_starts_snakemake(default_run):
    """`python -m snakemake` and `python3 -m snakemake` (a new venv alike) plan nothing after a run
    made by the `snakemake` script: no rule's recorded code holds the interpreter's path."""
    bin_dir = Path(sys.executable).parent
    for python in ("python", "python3"):
        proc = subprocess.run([str(bin_dir / python), "-m", "snakemake", "-n", "results/tables/benchmark2.csv"],
                              cwd=default_run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.returncode == 0 and "Nothing to be done" in proc.stdout, (python, proc.stdout[-3000:])


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
    view2 = metrics[(metrics.protocol == "lfw_view2") & (metrics.model == "dlib_resnet")]
    view = view2.set_index(["ref_variant", "probe_variant"])["eer"]
    unmasked = view[("unmasked", "unmasked")]
    masked = view[("unmasked", "surgical_blue")]
    print(f"LFW-mini View 2 EER unmasked {unmasked:.4f}, unmasked-vs-surgical_blue {masked:.4f}, "
          f"unmasked-vs-n95_white {view[('unmasked', 'n95_white')]:.4f}")
    assert unmasked < 0.05
    assert masked > unmasked
    assert view[("unmasked", "n95_white")] > unmasked
    counts = view2.set_index(["ref_variant", "probe_variant"])[["n_genuine", "n_impostor"]]
    assert (counts.sum(axis=1) == 240).all()  # every pair of the fixture's pairs.txt was scored
    # models trained on LFW identities are never scored on View 2, whose people they may have seen
    assert set(metrics[metrics.protocol == "lfw_view2"].model) == {"dlib_resnet"}


def test_lfw_mini_head_trained_for_masks_lowers_masked_probe_eer(lfw_mini_run):
    """Identity split of LFW-mini: the head learns on train, is selected on val, and on the test
    identities (all pairs of their images) it beats the pretrained model it starts from."""
    import json

    metrics = pd.read_csv(lfw_mini_run / "results/tables/all_metrics.csv")
    test = metrics[metrics.protocol == "test_pairs"].set_index(["model", "ref_variant", "probe_variant"])["eer"]
    report = json.loads((lfw_mini_run / "results/models/dlib_masked_head/report.json").read_text())
    lines = [f"{m:>16} " + " ".join(f"{p}={test[(m, 'unmasked', p)]:.4f}"
                                    for p in ("unmasked", "surgical_blue", "n95_white"))
             for m in ("dlib_resnet", "dlib_masked_head", "ensemble")]
    print("LFW-mini test identities, EER:\n" + "\n".join(lines) + f"\ntraining: {report}")
    # lower on average over the masks it learnt, and higher on none (LFW-mini's test EER moves in
    # steps of a few genuine pairs: a mask type may tie; tests/test_head_keeps_unmasked.py asks
    # for a lower EER on each over all pairs of the test people)
    masks = ("surgical_blue", "n95_white")
    head = np.array([test[("dlib_masked_head", "unmasked", m)] for m in masks])
    base = np.array([test[("dlib_resnet", "unmasked", m)] for m in masks])
    assert head.mean() < base.mean() and (head <= base).all(), (head, base)
    assert test[("dlib_masked_head", "unmasked", "unmasked")] <= test[("dlib_resnet", "unmasked", "unmasked")] + 0.002
    # the untrained head is dlib as the tables score it (neg_l2 on its raw embeddings)
    assert report["val_score"] == report["base_val_score"] == "neg_l2"
    # equal up to float rounding of the projected vectors (a near-tie flipping moves one pair in 572)
    assert report["untrained_val_eer"] == pytest.approx(report["base_val_eer"], abs=2.5e-3)
    splits = pd.read_parquet(lfw_mini_run / "results/lfw/splits/identity.parquet")
    parts = splits.groupby("split").identity.apply(set)
    assert not parts["train"] & parts["test"] and not parts["val"] & parts["test"]
    pairs = pd.read_parquet(lfw_mini_run / "results/lfw/pairs/test_pairs.parquet")
    test_images = set(splits[splits.split == "test"].image_id)
    assert set(pairs.ref_image) | set(pairs.probe_image) <= test_images


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
    """The DICTA 2021 config's whole DAG (CelebA at 50 shards) is listed with no data present."""
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
    from maskbench.config import models_of_kind, CHIP_KINDS

    chip_models = models_of_kind(config, *CHIP_KINDS)
    assert counts["embed"] == n_datasets * (1 + len(config["masks"])) * len(chip_models)
    print(f"paper config dry run: {counts['total']} jobs in {seconds:.1f} s")
