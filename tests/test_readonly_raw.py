"""Raw inputs are read-only to the workflow: only acquire writes under resources/raw.

Root ignores permission bits, so the run after acquisition is made without the capabilities that
bypass them (or, failing that, on an immutable folder): a write under resources/raw really fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, copy_workflow, snakemake
from unprivileged import lock_immutable, make_read_only, make_writable, restricted_prefix, run_restricted, snakemake_exe

pytestmark = pytest.mark.slow

RAW = "resources/raw"


def small_demo_config() -> dict:
    """The default config shrunk to one small shard, one mask type, the pretrained model, one table."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    pretrained = next(name for name, spec in config["models"].items() if spec["kind"] == "dlib_resnet")
    config["models"] = {pretrained: config["models"][pretrained]}
    config["datasets"] = {"demo": {**config["datasets"]["demo"], "shards": 1,
                                   "generate": {"identities": 12, "images_per_identity": 3, "size": 250}}}
    first_mask = next(iter(config["masks"]))
    config["masks"] = {first_mask: config["masks"][first_mask]}
    config["tables"] = {"benchmark2": {**config["tables"]["benchmark2"], "probe_variant": first_mask}}
    config.get("evaluation", {})["bootstrap"] = 20
    return config


def tree_state(folder: Path) -> dict[str, tuple]:
    """Every entry below ``folder``: kind, content hash and modification time."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else None
            state[str(p.relative_to(folder))] = (p.is_dir(), digest, st.st_mtime_ns)
    return state


def test_workflow_runs_with_the_raw_folder_read_only(tmp_path):
    prefix, how = restricted_prefix()
    target = "results/tables/benchmark2.csv"
    work = copy_workflow(tmp_path / "wf")
    (work / "small.yaml").write_text(yaml.safe_dump(small_demo_config()))
    config = ["--configfile", "small.yaml"]
    snakemake(work, "--cores", "2", f"{RAW}/demo/acquired.json", *config)  # acquire, with full rights
    raw = work / RAW
    before = tree_state(raw)
    assert any(name.endswith(".png") for name in before)  # the images themselves live there
    if prefix is not None:
        make_read_only(work / "resources")
        try:
            probe = run_restricted(prefix, ["touch", str(raw / "demo" / "probe")], work)
            assert probe.returncode != 0, "the raw folder is still writable for the run"
            print(f"read-only raw: {how}; a write there fails: {probe.stdout.strip()}")
            proc = run_restricted(prefix, [snakemake_exe(), "--cores", "2", target, *config], work)
            # control: the one rule that writes there does fail under the same restriction
            forced = run_restricted(prefix, [snakemake_exe(), "--cores", "1", f"{RAW}/demo/acquired.json",
                                             "--forcerun", "acquire", *config], work)
            assert forced.returncode != 0, forced.stdout[-3000:]
        finally:
            make_writable(work / "resources")
    else:
        with lock_immutable(raw) as locked:
            if not locked:
                pytest.skip(f"{how}; and chattr +i is not supported here")
            with pytest.raises(PermissionError):
                (raw / "demo" / "probe").write_text("x")
            print("read-only raw: root, with chattr +i on resources/raw")
            proc = snakemake(work, "--cores", "2", target, *config, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "rule acquire:" not in proc.stdout  # nothing re-acquired
    assert tree_state(raw) == before  # not one file added, changed or touched
    table = pd.read_csv(work / target, index_col="dataset")
    assert list(table.index) == ["demo"] and table.notna().all().all()


# ----------------------------------------------------------------------------------------------
# no rule but acquire declares a file under resources/raw


RULE_FILES = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(), storage_settings=StorageSettings(),
            config_settings=ConfigSettings(configfiles=[Path(p) for p in sys.argv[1:]]),
            snakefile=Path("Snakefile"), workdir=Path("."),
        )._workflow
        files = {
            rule.name: [str(f) for f in [*rule.output, *rule.log]] + ([str(rule.benchmark)] if rule.benchmark else [])
            for rule in workflow.rules
        }
    print("RULE_FILES=" + json.dumps(files))
""")


def rule_files(work: Path, configfiles: list[str]) -> dict[str, list[str]]:
    """rule -> every output, log and benchmark path pattern it declares, read from the loaded workflow."""
    proc = subprocess.run([sys.executable, "-c", RULE_FILES, *configfiles], cwd=work, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RULE_FILES="))
    return json.loads(line.removeprefix("RULE_FILES="))


def under_raw(work: Path, pattern: str) -> bool:
    path = os.path.normpath(os.path.join(work, pattern))
    raw = os.path.normpath(work / RAW)
    return path == raw or path.startswith(raw + os.sep)


@pytest.mark.parametrize("configfiles", [[], ["config/paper.yaml"], ["config/utkface.yaml"]],
                         ids=["default", "paper", "utkface"])
def test_only_acquire_declares_files_under_resources_raw(tmp_path, configfiles):
    work = copy_workflow(tmp_path / "wf")
    files = rule_files(work, configfiles)
    config_args = [a for f in configfiles for a in ("--configfile", f)]
    output = snakemake(work, "--list-rules", *config_args).stdout
    listed = [line.strip() for line in output.splitlines() if line.strip() and " " not in line.strip()]
    assert "acquire" in listed
    assert set(listed) <= set(files), "the loaded workflow misses rules that --list-rules shows"
    writers = sorted(rule for rule, paths in files.items() if any(under_raw(work, p) for p in paths))
    print(f"{len(files)} rules checked ({' '.join(configfiles) or 'default config'}); writers under {RAW}: {writers}")
    assert writers == ["acquire"], {r: files[r] for r in writers}
    assert all(under_raw(work, p) or p.startswith("results/logs/") for p in files["acquire"])
