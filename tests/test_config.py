"""The config is validated at start-up and wrong entries are named in the error."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from maskbench.config import ConfigError, check_config, comparison_pairs, comparisons_for, variants_for
from conftest import REPO, copy_workflow, snakemake


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


def test_default_config_comparisons_expand_masks():
    config = load("config.yaml")
    check_config(config)
    masks = list(config["masks"])
    assert variants_for(config, "demo") == ["unmasked", *masks]
    assert comparisons_for(config, "demo", "all_identities") == [
        "unmasked-vs-unmasked", *[f"unmasked-vs-{m}" for m in masks]
    ]


def test_masked_masked_means_same_mask_on_both_sides():
    config = load("lfw.yaml")
    pairs = comparison_pairs(config, "lfw", "lfw_view2")
    masks = list(config["masks"])
    assert [p for p in pairs if p[0] != "unmasked"] == [(m, m) for m in masks]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["datasets"]["demo"].__setitem__("protocols", ["nope"]), "unknown protocol 'nope'"),
        (lambda c: c["datasets"]["demo"].__setitem__("masks", ["nope"]), "unknown mask type 'nope'"),
        (lambda c: c["tables"]["benchmark2"].__setitem__("probe_variant", "nope"), "probe_variant"),
        (lambda c: c["protocols"]["all_identities"]["comparisons"].append(["unmasked", "nope"]), "'nope'"),
    ],
)
def test_dangling_references_are_named(edit, message):
    config = copy.deepcopy(load("config.yaml"))
    edit(config)
    with pytest.raises(ConfigError, match=message):
        check_config(config)


def test_schema_rejects_unknown_key_and_wrong_type_with_their_names(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    config = load("config.yaml")
    config["align"]["chip_sise"] = 150
    (work / "bad.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(work, "-n", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert "chip_sise" in proc.stdout

    config = load("config.yaml")
    config["datasets"]["demo"]["shards"] = "two"
    (work / "bad2.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(work, "-n", "--configfile", "bad2.yaml", check=False)
    assert proc.returncode != 0
    assert "'two' is not of type 'integer'" in proc.stdout


def test_names_that_could_escape_results_are_refused(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    config = load("config.yaml")
    config["masks"]["../../etc"] = dict(config["masks"]["surgical_blue"])
    (work / "bad.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(work, "-n", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert "../../etc" in proc.stdout
