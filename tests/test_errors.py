"""Errors a user meets are one message naming the file and the fix, and leave no partial output.

Disk full, permission denied, read-only disk and file-size limits are produced for real where the
machine allows it (a private tmpfs, an unprivileged user, RLIMIT_FSIZE) and by a failing write
otherwise; missing data, bad config and a dataset without a single face go through their stages.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import runpy
import shutil
import subprocess
import sys
import textwrap
import types

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, copy_workflow, snakemake
from unprivileged import make_read_only, make_writable, restricted_prefix, run_restricted

from maskbench.io import atomic
from maskbench.errors import StorageError, UserError, exit_on_user_error, explain_os_error
from maskbench.io.manifests import ALIGNED_SCHEMA

FIXES = {
    errno.ENOSPC: "no space left",
    errno.EDQUOT: "quota",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted",
    errno.EROFS: "read-only",
    errno.EFBIG: "file-size limit",
}


def big_table(rows: int = 200_000) -> pa.Table:
    """Incompressible enough to need a few megabytes on disk."""
    import numpy as np

    return pa.table({"x": np.random.default_rng(0).random(rows)})


# ----------------------------------------------------------------------------------------------
# the translation itself


@pytest.mark.parametrize("code", sorted(FIXES))
def test_known_os_errors_name_the_path_and_the_fix(tmp_path, code):
    target = tmp_path / "results" / "x.parquet"
    clear = explain_os_error(OSError(code, os.strerror(code)), target)
    assert isinstance(clear, StorageError) and isinstance(clear, OSError) and isinstance(clear, UserError)
    assert clear.errno == code and clear.filename == str(target)
    message = str(clear)
    assert str(target) in message and FIXES[code] in message.lower()
    assert "run" in message.lower() or "chmod" in message  # what to do, not only what happened


def test_permission_denied_when_reading_says_to_make_it_readable(tmp_path):
    source = tmp_path / "landmarks.csv"
    message = str(explain_os_error(PermissionError(errno.EACCES, "Permission denied"), source, "read"))
    assert message.startswith(f"cannot read {source}: permission denied") and "chmod u+r" in message


def test_unknown_os_errors_are_left_alone(tmp_path):
    assert explain_os_error(OSError(errno.ENOENT, "No such file"), tmp_path) is None
    assert explain_os_error(OSError(errno.ENOSPC, "full"), tmp_path, "read") is None


def test_exit_on_user_error_prints_one_line(tmp_path):
    script = textwrap.dedent("""
        from maskbench.errors import exit_on_user_error, StorageError
        with exit_on_user_error():
            raise StorageError(28, "cannot write /data/x: no space left", "/data/x")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == "error: cannot write /data/x: no space left\n"
    with pytest.raises(ValueError):  # a programming error keeps its traceback
        with exit_on_user_error():
            raise ValueError("bug")


# ----------------------------------------------------------------------------------------------
# disk full while writing


def half_then_enospc(where: str, payload: object, *args, **kwargs) -> None:
    """A write that gets half way, then the disk is full."""
    with open(where, "wb") as f:
        f.write(b"PAR1 half a file")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_midway_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "out" / "table.parquet"
    atomic.write_table(target, pa.table({"x": [1, 2]}))
    old = target.read_bytes()
    monkeypatch.setattr(atomic.pq, "write_table", lambda table, where, **kw: half_then_enospc(where, table))
    with pytest.raises(StorageError) as err:
        atomic.write_table(target, big_table(10))
    assert err.value.errno == errno.ENOSPC
    assert str(target) in str(err.value) and "no space left" in str(err.value)
    assert target.read_bytes() == old  # the reader still sees the complete old file
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.parquet"]  # temp file removed


def test_reading_error_inside_the_block_is_not_blamed_on_the_destination(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(PermissionError) as err:
        with atomic.atomic_path(target):
            raise PermissionError(errno.EACCES, "Permission denied", "/some/input.csv")
    assert not isinstance(err.value, StorageError)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def _in_private_tmpfs(tmp_path, mount_options: str, code: str) -> dict:
    """Run ``code`` (a Python snippet printing JSON) with DIR on a fresh tmpfs; skip if impossible."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no `unshare` to mount a private tmpfs")
    folder = tmp_path / "mnt"
    folder.mkdir()
    shell = f'mount -t tmpfs -o {mount_options} none "$1" && exec "$2" -c "$3" "$1"'
    proc = subprocess.run([unshare, "--mount", "sh", "-c", shell, "sh", str(folder), sys.executable, code],
                          capture_output=True, text=True, timeout=120)
    if "mount" in proc.stderr and proc.returncode != 0 and not proc.stdout:
        pytest.skip(f"cannot mount a private tmpfs here ({proc.stderr.strip()[:200]})")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


WRITE_AND_REPORT = textwrap.dedent("""
    import json, os, sys
    import numpy as np, pyarrow as pa
    from maskbench.io.atomic import write_table
    from maskbench.errors import StorageError
    folder = sys.argv[1]
    target = os.path.join(folder, "scores", "table.parquet")
    try:
        write_table(target, pa.table({"x": np.random.default_rng(0).random(200_000)}))
        out = {"error": None}
    except StorageError as exc:
        out = {"error": str(exc), "errno": exc.errno, "type": type(exc).__name__}
    out["left"] = sorted(os.path.relpath(os.path.join(d, f), folder)
                         for d, _, fs in os.walk(folder) for f in fs)
    print(json.dumps(out))
""")


def test_real_disk_full_on_a_tiny_tmpfs(tmp_path):
    result = _in_private_tmpfs(tmp_path, "size=256k", WRITE_AND_REPORT)
    print("tiny tmpfs:", result)
    assert result["errno"] == errno.ENOSPC and result["type"] == "StorageError"
    assert "scores/table.parquet" in result["error"] and "no space left" in result["error"]
    assert result["left"] == []


def test_real_read_only_file_system(tmp_path):
    result = _in_private_tmpfs(tmp_path, "ro,size=1m", WRITE_AND_REPORT)
    assert result["errno"] == errno.EROFS
    assert "read-only" in result["error"] and "--directory" in result["error"]
    assert result["left"] == []


def test_real_file_size_limit(tmp_path):
    code = WRITE_AND_REPORT.replace(
        "folder = sys.argv[1]",
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))\n"
        "folder = sys.argv[1]",
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    result = json.loads(proc.stdout)
    assert result["errno"] == errno.EFBIG and "file-size limit" in result["error"]
    assert result["left"] == []


def test_real_permission_denied(tmp_path):
    prefix, how = restricted_prefix()
    if prefix is None:
        pytest.skip(how)
    print(how)
    locked = tmp_path / "results"
    locked.mkdir()
    make_read_only(locked)
    target = locked / "sub" / "summary.json"
    code = textwrap.dedent(f"""
        from maskbench.io.atomic import write_json
        from maskbench.errors import exit_on_user_error
        with exit_on_user_error():
            write_json({str(target)!r}, {{"a": 1}})
    """)
    try:
        proc = run_restricted(prefix, [sys.executable, "-c", code], tmp_path)
    finally:
        make_writable(locked)
    assert proc.returncode == 1, proc.stdout
    assert proc.stdout.startswith(f"error: cannot write {target}: permission denied"), proc.stdout
    assert "Traceback" not in proc.stdout
    assert list(locked.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# the stages: disk full, missing dataset, bad config, no faces


@pytest.fixture
def demo_index(tmp_path):
    """A tiny generated dataset, acquired and indexed as the workflow does."""
    from maskbench.stages.acquire import acquire
    from maskbench.stages.index import index_dataset

    acquired = tmp_path / "raw" / "tiny" / "acquired.json"
    spec = {"layout": "demo", "generate": {"identities": 2, "images_per_identity": 2, "size": 100}}
    acquire("tiny", spec, 0, acquired)
    index = tmp_path / "results" / "tiny" / "index.parquet"
    index_dataset(str(acquired), "demo", "images", 1, {}, str(index), str(index.with_suffix(".json")))
    return acquired, index


ALIGN_CFG = {"detector": "hog", "upsample": 1, "chip_size": 150, "padding": 0.25}


def test_align_shard_disk_full_names_the_shard_and_leaves_nothing(demo_index, tmp_path, monkeypatch):
    from maskbench.stages.align import align_shard

    acquired, index = demo_index
    out = tmp_path / "results" / "tiny" / "aligned" / "shard-0.parquet"
    monkeypatch.setattr(atomic.pq, "write_table", lambda table, where, **kw: half_then_enospc(where, table))
    with pytest.raises(StorageError) as err:
        align_shard(str(index), str(acquired), "images", 0, ALIGN_CFG, None, str(out))
    assert str(out) in str(err.value) and "no space left" in str(err.value).lower()
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_demo_generation_disk_full_leaves_no_half_dataset(tmp_path, monkeypatch):
    from maskbench.stages.acquire import acquire

    real = pathlib.Path.write_bytes
    calls = []

    def fills_up(self, data):
        calls.append(self)
        if len(calls) == 3:
            real(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", fills_up)
    raw = tmp_path / "raw" / "demo"
    spec = {"layout": "demo", "generate": {"identities": 2, "images_per_identity": 2, "size": 100}}
    with pytest.raises(StorageError) as err:
        acquire("demo", spec, 0, raw / "acquired.json")
    assert "images.partial/person_001/person_001_0001.png" in str(err.value)
    assert list(raw.iterdir()) == []  # no half-generated images, no manifest


@pytest.mark.slow
def test_missing_datasets_fail_in_one_line_each_through_the_workflow(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    config = {"datasets": {
        "gone": {"layout": "folder", "shards": 1, "protocols": [],
                 "files": {"images": {"path": str(tmp_path / "no" / "such" / "faces")}}},
        "byhand": {"layout": "folder", "shards": 1, "protocols": [],
                   "files": {"images": {"manual": "Request the archive from the data owner.",
                                        "filename": "faces.tgz"}}},
    }}
    (work / "missing.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(work, "--cores", "1", "--keep-going", "resources/raw/gone/acquired.json",
                     "resources/raw/byhand/acquired.json", "--configfile", "config/config.yaml", "missing.yaml",
                     check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout, proc.stdout[-4000:]
    gone = [line for line in proc.stdout.splitlines() if line.startswith("error: dataset 'gone'")]
    assert gone and str(tmp_path / "no" / "such" / "faces") in gone[0] and "fix the path" in gone[0]
    assert "error: dataset 'byhand': file 'images' must be downloaded by hand" in proc.stdout
    assert "Request the archive from the data owner." in proc.stdout
    assert str((work / "resources/raw/byhand/faces.tgz").resolve()) in proc.stdout
    assert not (work / "resources/raw/gone/acquired.json").exists()
    assert not (work / "resources/raw/byhand/acquired.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("dataset, must_name", [
    ({"mine": {"layout": "folder", "shards": 1, "protocols": ["all_identitie"],
               "files": {"images": {"path": "/x"}}}},
     ["datasets.mine.protocols", "'all_identitie'", "KNOWN_PROTOCOLS"]),
    ({"mine": {"layout": "folderx", "shards": 1, "protocols": [], "files": {"images": {"path": "/x"}}}},
     ["'folderx' is not one of", "'folder'", "layout"]),
    ({"../escape": {"layout": "folder", "shards": 1, "protocols": [], "files": {"images": {"path": "/x"}}}},
     ["'../escape' does not match", "lower-case letters"]),
])
def test_bad_config_names_the_key_and_what_is_allowed(tmp_path, dataset, must_name):
    work = copy_workflow(tmp_path / "wf")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["datasets"] = dataset
    (work / "bad.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(work, "-n", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    must_name = [str(sorted(config["protocols"])) if p == "KNOWN_PROTOCOLS" else p for p in must_name]
    for part in must_name:
        assert part in proc.stdout, (part, proc.stdout[-3000:])
    assert not (work / "results").exists() and not (work / "resources").exists()


def aligned_shard(path, statuses: list[str]) -> str:
    rows = [{"image_id": f"p{i % 3}/{i}.jpg", "identity": f"p{i % 3}", "status": s,
             "reason": None if s == "ok" else {"no_face": "the detector found no face",
                                              "unreadable": "not an image (format not recognised)"}[s]}
            for i, s in enumerate(statuses)]
    pq.write_table(pa.Table.from_pylist(rows, schema=ALIGNED_SCHEMA), path)
    return str(path)


def test_dataset_without_a_single_face_fails_naming_it_and_the_settings(tmp_path):
    from maskbench.stages.align import NoFacesError, write_align_summary

    shards = [aligned_shard(tmp_path / "shard-0.parquet", ["no_face"] * 5),
              aligned_shard(tmp_path / "shard-1.parquet", ["no_face"] * 3 + ["unreadable"])]
    out = tmp_path / "summary.json"
    with pytest.raises(NoFacesError) as err:
        write_align_summary("blurry", shards, ["ok", "fallback", "provided"], str(out))
    message = str(err.value)
    for part in ("dataset 'blurry'", "9 images", "no_face 8", "unreadable 1", "detector: cnn", "upsample",
                 "datasets.blurry.fallback_box", "results/blurry/aligned/shard-*.parquet"):
        assert part in message, part
    assert not out.exists()


def test_dataset_with_some_faces_gets_its_summary(tmp_path):
    from maskbench.stages.align import write_align_summary
    from maskbench.io.summaries import status_counts

    shards = [aligned_shard(tmp_path / "shard-0.parquet", ["no_face", "ok", "unreadable"])]
    out = tmp_path / "summary.json"
    counts = write_align_summary("fine", shards, ["ok", "fallback", "provided"], str(out))
    assert json.loads(out.read_text()) == counts == status_counts(shards, ["ok", "fallback", "provided"])
    assert counts["usable"] == 1


def test_align_summary_script_exits_with_one_line(tmp_path, capsys):
    shards = [aligned_shard(tmp_path / "shard-0.parquet", ["no_face"] * 4)]
    log = tmp_path / "summary.log"
    smk = types.SimpleNamespace(
        wildcards=types.SimpleNamespace(dataset="blurry"), input=types.SimpleNamespace(shards=shards),
        params=types.SimpleNamespace(usable=["ok", "fallback", "provided"]),
        output=[str(tmp_path / "summary.json")], log=[str(log)],
    )
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(REPO / "workflow" / "scripts" / "align_summary.py"), init_globals={"snakemake": smk})
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: dataset 'blurry': no usable face in any of its 4 images") and err.count("\n") == 1
    assert "NoFacesError: dataset 'blurry'" in log.read_text()
    assert not (tmp_path / "summary.json").exists()


def test_a_stage_refuses_to_run_another_checkouts_library(tmp_path, monkeypatch):
    """Inside the workflow (MASKBENCH_ROOT set) a job that imports maskbench from elsewhere than the
    workflow's checkout (a conda env made from another checkout) stops, naming both, before it
    writes anything; the checkout's own library runs."""
    import maskbench
    from maskbench.logs import OtherCheckoutError, check_checkout_library, log_to

    monkeypatch.setenv("MASKBENCH_ROOT", str(tmp_path / "other"))
    with pytest.raises(OtherCheckoutError, match="other"):
        check_checkout_library()
    with pytest.raises(SystemExit):
        with log_to(str(tmp_path / "job.log")):
            (tmp_path / "written").touch()
    assert not (tmp_path / "written").exists()
    assert "OtherCheckoutError" in (tmp_path / "job.log").read_text()
    monkeypatch.setenv("MASKBENCH_ROOT", str(pathlib.Path(maskbench.__file__).resolve().parents[2]))
    check_checkout_library()  # this checkout's own library
    monkeypatch.delenv("MASKBENCH_ROOT")
    check_checkout_library(tmp_path / "elsewhere")  # outside a workflow: nothing to compare with
