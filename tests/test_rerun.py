"""Incremental re-runs: a change re-runs exactly the branch it made stale, with the reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import copy_workflow, snakemake

pytestmark = pytest.mark.slow
TARGET = "all"


def planned_jobs(output: str) -> list[dict[str, str]]:
    """(rule, output, reason) of every job in a dry run's output."""
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", output):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if not rule:
            continue
        out = re.search(r"^\s+output: (.*)$", block, re.M)
        reason = re.search(r"^\s+reason: (.*)$", block, re.M)
        jobs.append({"rule": rule[1], "output": out[1] if out else "", "reason": reason[1] if reason else ""})
    return jobs


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("rerun") / "wf")
    snakemake(work, TARGET, "--cores", "2")
    return work


def edit_config(work: Path, edit) -> None:
    path = work / "config" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def reuse_finished_run(work: Path, finished_run: Path) -> None:
    """Share the finished outputs and Snakemake's metadata with a fresh copy of the code."""
    for name in ("results", "resources", ".snakemake"):
        (work / name).symlink_to(finished_run / name)


def jobs_by_rule(jobs: list[dict]) -> dict[str, list[dict]]:
    by_rule: dict[str, list[dict]] = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], []).append(job)
    return by_rule


def test_changing_one_mask_colour_reruns_only_that_mask(finished_run, tmp_path):
    """A mask type no trained model learns from: its branch re-runs, for every model, and nothing else."""
    from maskbench.config import models_of_kind, train_masks

    work = copy_workflow(tmp_path / "wf")
    reuse_finished_run(work, finished_run)
    config = yaml.safe_load((work / "config/config.yaml").read_text())
    heads = models_of_kind(config, "projection")
    learnt = {m for h in heads for m in train_masks(config, h, "demo")}
    changed = next(m for m in config["masks"] if m not in learnt)
    others = [m for m in config["masks"] if m != changed]
    edit_config(work, lambda c: c["masks"][changed].__setitem__("color", "#123456"))
    by_rule = jobs_by_rule(jobs := planned_jobs(snakemake(work, "-n", TARGET).stdout))
    shards = config["datasets"]["demo"]["shards"]
    chip_models = models_of_kind(config, "dlib_resnet")
    ensembles = models_of_kind(config, "ensemble")
    assert len(by_rule["mask"]) == shards
    assert all(f"/masked/{changed}/" in j["output"] for j in by_rule["mask"])
    assert all(j["reason"].startswith("Params have changed") for j in by_rule["mask"])
    assert len(by_rule["embed"]) == len(chip_models)  # one job per variant, whatever the shard count
    assert len(by_rule["project"]) == len(heads)
    assert all(j["output"].endswith(f"/{changed}.parquet") for j in by_rule["embed"] + by_rule["project"])
    scored = by_rule["score"] + by_rule["fuse"]
    assert {j["output"].split(",")[0].rsplit("/", 1)[1] for j in scored} == {f"unmasked-vs-{changed}.parquet"}
    assert len(by_rule["score"]) == len(chip_models) + len(heads) and len(by_rule["fuse"]) == len(ensembles)
    # score and fuse jobs write their metrics too: no metrics job of its own (that is for imported scores)
    assert "metrics" not in by_rule
    assert all("/metrics/" in j["output"] and j["output"].endswith(f"/unmasked-vs-{changed}.json")
               for j in scored)
    assert len(by_rule["identify"]) == len(chip_models) + len(heads)
    assert all(j["output"].endswith(f"/{changed}.json") for j in by_rule["identify"])
    assert set(by_rule) <= {"mask", "mask_summary", "coverage", "embed", "project", "score", "fuse", "metrics",
                            "identify", "identification_table", "curve_figures", "mask_effect_figure",
                            "table", "all_metrics", "models_table", "all"}
    assert not any(other in j["output"] for j in jobs for other in others)


def test_changing_a_mask_a_head_learns_from_retrains_it(finished_run, tmp_path):
    """The head's training data changed: it is retrained, then every variant is projected again."""
    from maskbench.config import models_of_kind, train_masks

    work = copy_workflow(tmp_path / "wf")
    reuse_finished_run(work, finished_run)
    config = yaml.safe_load((work / "config/config.yaml").read_text())
    head = models_of_kind(config, "projection")[0]
    changed = train_masks(config, head, "demo")[0]
    edit_config(work, lambda c: c["masks"][changed].__setitem__("color", "#123456"))
    by_rule = jobs_by_rule(planned_jobs(snakemake(work, "-n", TARGET).stdout))
    assert [j["output"].split(",")[0] for j in by_rule["train_head"]] == [f"results/models/{head}/model.safetensors"]
    assert len(by_rule["project"]) == 1 + len(config["masks"])  # every variant, one job each
    assert not {"acquire", "index", "align", "pairs", "split"} & set(by_rule)


def test_adding_a_model_runs_only_that_models_jobs(finished_run, tmp_path):
    work = copy_workflow(tmp_path / "wf")
    reuse_finished_run(work, finished_run)
    edit_config(work, lambda c: c["models"].__setitem__(
        "dlib_reference", {"kind": "dlib_resnet", "backend": "dlib", "score": "neg_l2"}))
    jobs = planned_jobs(snakemake(work, "-n", TARGET).stdout)
    rules = {j["rule"] for j in jobs}
    assert rules <= {"embed", "score", "metrics", "identify", "identification_table", "curve_figures",
                     "mask_effect_figure", "table", "all_metrics", "models_table", "all"}
    for job in jobs:
        if job["rule"] in ("embed", "score", "metrics", "identify"):
            assert "/dlib_reference/" in job["output"], job


def test_editing_a_datasets_protocols_does_not_acquire_it_again(finished_run, tmp_path):
    """The acquire job reads only the dataset's layout, files and generator settings: another
    dataset setting changed leaves the images, chips and embeddings as they are."""
    work = copy_workflow(tmp_path / "wf")
    reuse_finished_run(work, finished_run)
    edit_config(work, lambda c: c["datasets"]["demo"].__setitem__("protocols", ["test_pairs"]))
    rules = {j["rule"] for j in planned_jobs(snakemake(work, "-n", TARGET).stdout)}
    assert not rules & {"acquire", "index", "align", "mask", "split", "pairs", "embed", "score"}


def test_editing_a_stage_library_reruns_that_stage_not_earlier_ones(finished_run, tmp_path):
    work = copy_workflow(tmp_path / "wf")
    reuse_finished_run(work, finished_run)
    mask_code = work / "src/maskbench/stages/mask.py"
    mask_code.write_text(mask_code.read_text() + "\n# edited\n")
    out = snakemake(work, "-n", TARGET).stdout
    jobs = planned_jobs(out)
    rules = {j["rule"] for j in jobs}
    assert "mask" in rules
    assert not rules & {"acquire", "index", "align", "align_summary", "copies", "pairs"}
    # the mask script's code stamp is rewritten, naming the edited file; the mask jobs re-run because of it
    assert re.search(r"maskbench: results/code/mask\.sha256 rewritten, code changed: \S*stages/mask\.py$",
                     out, re.M), out[:3000]
    assert "results/code/align.sha256 rewritten" not in out
    assert all("results/code/mask.sha256" in j["reason"] for j in jobs if j["rule"] == "mask")


def test_a_finished_run_planned_from_a_fresh_checkout_elsewhere_has_nothing_to_do(finished_run, tmp_path):
    """The same code in a fresh checkout elsewhere (every file newer than the run's outputs, as
    after a clone), planning the run's directory from outside it (--snakefile, --directory),
    re-runs nothing; editing a script's content re-runs its stage. (Stamps held paths relative to
    the working directory, acquire took its library files, and Snakemake's `code` trigger compares
    a script's file time: every stage re-ran.)"""
    import os

    work = copy_workflow(tmp_path / "run")
    reuse_finished_run(work, finished_run)
    snakemake(work, "-n", TARGET)  # the stamps as this code has them (another test may have edited a module)
    stamps = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (work / "results/code").iterdir()}
    moved = copy_workflow(tmp_path / "elsewhere" / "checkout")
    for file in moved.rglob("*"):
        os.utime(file)  # a clone's files are as new as the clone
    out = snakemake(tmp_path, "-n", TARGET, "--snakefile", str(moved / "Snakefile"), "--directory", str(work)).stdout
    assert not planned_jobs(out) and "Nothing to be done" in out, out[-3000:]
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (work / "results/code").iterdir()} == stamps
    assert "acquire_files.sha256" not in stamps and "acquire.sha256" in stamps  # the demo set's acquire stamp
    script = moved / "workflow/scripts/mask.py"
    script.write_text(script.read_text() + "\n# edited\n")
    out = snakemake(tmp_path, "-n", TARGET, "--snakefile", str(moved / "Snakefile"), "--directory", str(work)).stdout
    jobs = jobs_by_rule(planned_jobs(out))
    assert "mask" in jobs and not {"acquire", "index", "align", "split", "pairs"} & set(jobs), sorted(jobs)
    assert "results/code/mask.sha256 rewritten, code changed: workflow/scripts/mask.py" in out


def test_editing_the_copies_reader_does_not_rerun_the_identity_split_or_training(finished_run, tmp_path):
    """The identity split (every trained model learns on it) neither reads copies.json nor stamps
    the code that reads it: an edit there re-runs the protocols that read the copies only."""
    work = copy_workflow(tmp_path / "wf")
    reuse_finished_run(work, finished_run)
    snakemake(work, "-n", TARGET)  # the stamps as this code has them (another test may have edited a module)
    reader = work / "src/maskbench/io/copies.py"
    reader.write_text(reader.read_text() + "\n# edited\n")
    jobs = jobs_by_rule(planned_jobs(snakemake(work, "-n", TARGET).stdout))
    assert {"pairs", "identification_protocol"} <= set(jobs), sorted(jobs)
    assert not {"copies", "split", "train_head", "align"} & set(jobs), sorted(jobs)
    assert (work / "results/code/split_identity.sha256").is_file()


def test_code_stamps_stay_as_they_are_while_another_run_holds_the_directory(finished_run, tmp_path):
    """A stamp rewritten while a run's jobs work with the code they started with would be older than
    their outputs, which would then look current: while Snakemake's lock files are there, a second
    snakemake command (here a dry run) leaves the stamps alone and says so."""
    work = copy_workflow(tmp_path / "wf")
    reuse_finished_run(work, finished_run)
    snakemake(work, "-n", TARGET)  # the stamps as this copy's code has them
    stamp = work / "results/code/mask.sha256"
    before = stamp.read_bytes()
    mask_code = work / "src/maskbench/stages/mask.py"
    mask_code.write_text(mask_code.read_text() + "\n# edited during a run\n")
    lock = work / ".snakemake/locks/0.input.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("results/demo/index.parquet\n")
    try:
        out = snakemake(work, "-n", TARGET, check=False).stdout
    finally:
        lock.unlink()
    assert "lock files in .snakemake/locks (another run" in out, out[-3000:]
    assert "rewritten" not in out and stamp.read_bytes() == before
    out = snakemake(work, "-n", TARGET).stdout  # the run has ended: the edit shows
    assert "results/code/mask.sha256 rewritten" in out and stamp.read_bytes() != before
    assert "mask" in {j["rule"] for j in planned_jobs(out)}


def test_models_table_has_every_model_under_every_probe_variant(finished_run):
    """The ablation table of the demo run agrees with the long metrics and identification tables."""
    import json

    import pandas as pd

    from maskbench.reporting.model_table import COLUMNS

    root = finished_run / "results"
    models = pd.read_csv(root / "tables/models.csv", keep_default_na=False)
    config = yaml.safe_load((finished_run / "config/config.yaml").read_text())
    assert list(models.columns) == COLUMNS
    variants = ["unmasked", *sorted(config["masks"])]
    assert sorted(zip(models.model, models.probe_variant)) == sorted(
        (m, v) for m in config["models"] for v in variants)
    assert models.probe_variant.tolist()[:len(config["models"])] == ["unmasked"] * len(config["models"])
    metrics = pd.read_csv(root / "tables/all_metrics.csv").set_index(["model", "protocol", "ref_variant", "probe_variant"])
    ident = pd.read_csv(root / "tables/identification.csv").set_index(["model", "probe_variant"])
    for row in models.itertuples():
        assert float(row.eer) == pytest.approx(metrics.loc[(row.model, row.protocol, "unmasked", row.probe_variant), "eer"],
                                               abs=1e-6)
        if (row.model, row.probe_variant) in ident.index:
            assert float(row.rank_1) == pytest.approx(ident.loc[(row.model, row.probe_variant), "rank_1"], abs=1e-6)
        else:
            assert row.rank_1 == ""  # the ensemble has no embeddings to search with
    head = next(iter(m for m, s in config["models"].items() if s["kind"] == "projection"))
    report = json.loads((root / f"models/{head}/report.json").read_text())
    kept = models[models.model == head]
    assert (kept.kept_epoch.astype(int) == report["best_epoch"]).all()
    assert (kept.val_unmasked_eer.astype(float) <= report["unmasked_limit"] + 1e-9).all()
    assert (root / "figures/models.png").read_bytes()[:4] == b"\x89PNG"
    times = pd.read_csv(root / "benchmarks/training_time.csv")
    assert times.model.tolist() == [head] and (times.train_wall_seconds > 0).all()


def test_report_holds_every_table_and_figure_with_its_caption(finished_run, tmp_path):
    """`snakemake --report`: every configured table and every figure of the run is embedded with
    its caption rendered (wildcards filled in)."""
    import json

    from maskbench.config import models_of_kind

    work = copy_workflow(tmp_path / "wf")
    reuse_finished_run(work, finished_run)
    snakemake(work, "--report", str(tmp_path / "report.html"))
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    results = json.loads(re.search(r"var results = (\{.*?\});\n", html, re.S)[1])
    config = yaml.safe_load((work / "config/config.yaml").read_text())
    expected = {f"results/tables/{t}.csv": t for t in config["tables"]}
    expected["results/tables/all_metrics.csv"] = "metric"
    for figure in ("roc", "det", "scores", "mask_effect"):
        expected[f"results/figures/{figure}_demo.png"] = "demo"
    expected["results/tables/coverage.csv"] = "aligned"
    expected["results/tables/identification.csv"] = "identification"
    for head in models_of_kind(config, "projection"):
        expected[f"results/figures/training_{head}.png"] = head
    missing = sorted(set(expected) - set(results))
    assert not missing, f"not in the report: {missing}; it has {sorted(results)}"
    for path, words in expected.items():
        entry = results[path]
        assert entry["data_uri"] and entry["caption"].strip(), path
        assert words.split()[0] in entry["caption"], (path, entry["caption"][:200])
    assert "{{" not in html.split("var results", 1)[1][:200_000]  # no caption left unrendered
