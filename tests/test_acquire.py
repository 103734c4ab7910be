"""Acquire: local sources, downloads and their cache, checksums, manual sets, safe extraction."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import stat
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from maskbench.data.acquire import (
    EXTRACTED_MARKER,
    AcquireError,
    ChecksumError,
    DownloadError,
    ManualDownloadRequired,
    LOCK_FILE,
    ChecksumLock,
    UnsafeArchiveError,
    acquire_dataset,
)
from maskbench.stages.acquire import acquire

TREE = {
    "people/Ann/Ann_0001.jpg": b"ann-1",
    "people/Ann/Ann_0002.jpg": b"ann-2",
    "people/Bob/Bob_0001.jpg": b"bob-1",
}


def make_tgz(path: Path, tree: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in tree.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def make_zip(path: Path, tree: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in tree.items():
            zf.writestr(name, data)
    return path


def digest(path: Path, algo: str = "sha256") -> str:
    return hashlib.new(algo, path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under a folder with its content (None for folders and links)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(folder))] = None if p.is_dir() or p.is_symlink() else p.read_bytes()
    return out


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "source"
    folder.mkdir()
    return folder


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    return tmp_path / "raw" / "ds"


# ----------------------------------------------------------------------------------------------
# local sources


def test_local_archive_is_verified_and_extracted_without_touching_the_source(source, raw_dir):
    archive = make_tgz(source / "people.tgz", TREE)
    before = snapshot(source)
    spec = {"path": str(archive), "md5": digest(archive, "md5")}
    manifest = acquire_dataset("ds", {"images": spec}, raw_dir)
    entry = manifest["images"]
    assert entry == {"path": str((raw_dir / "images").absolute()), "sha256": digest(archive), "source": "path"}
    assert files_under(Path(entry["path"])) == TREE
    assert snapshot(source) == before


def test_manifest_records_paths_as_given_so_its_bytes_do_not_depend_on_where_the_run_is(tmp_path, monkeypatch):
    """A run gives relative paths (the config's, Snakemake's outputs): the manifest keeps them
    relative to the working directory, so two run directories write the same bytes and a moved
    one still finds its files; an absolute path stays absolute."""
    import json

    outside = tmp_path / "elsewhere" / "pairs.txt"
    outside.parent.mkdir()
    outside.write_text("2\t60\n")
    manifests = []
    for run in ("a", "b/deeper"):
        work = tmp_path / run / "work"
        (work.parent / "data").mkdir(parents=True)
        make_tgz(work.parent / "data" / "people.tgz", TREE)
        work.mkdir()
        monkeypatch.chdir(work)
        files = {"images": {"path": "../data/people.tgz"}, "pairs": {"path": str(outside)}}
        manifest = acquire_dataset("ds", files, Path("resources/raw/ds"))
        manifests.append(json.dumps(manifest, sort_keys=True))
        assert manifest["images"]["path"] == "resources/raw/ds/images" and manifest["pairs"]["path"] == str(outside)
        assert files_under(Path(manifest["images"]["path"])) == TREE
    assert manifests[0] == manifests[1]


def test_local_folder_is_used_in_place(source, raw_dir):
    for name, data in TREE.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    before = snapshot(source)
    manifest = acquire_dataset("ds", {"images": {"path": str(source / "people"), "url": "http://x/y.tgz"}}, raw_dir)
    assert manifest["images"] == {"path": str((source / "people").absolute()), "sha256": None, "source": "path"}
    assert snapshot(source) == before
    assert not (raw_dir / "images").exists()


def test_plain_local_file_is_not_extracted(source, raw_dir):
    pairs = source / "pairs.txt"
    pairs.write_text("2\t60\n")
    manifest = acquire_dataset("ds", {"pairs": {"path": str(pairs), "md5": digest(pairs, "md5")}}, raw_dir)
    assert manifest["pairs"] == {"path": str(pairs.absolute()), "sha256": digest(pairs), "source": "path"}


def test_local_zip_is_extracted(source, raw_dir):
    archive = make_zip(source / "people.zip", TREE)
    manifest = acquire_dataset("ds", {"images": {"path": str(archive), "sha256": digest(archive)}}, raw_dir)
    assert files_under(Path(manifest["images"]["path"])) == TREE


def test_missing_local_path_says_which(raw_dir, tmp_path):
    with pytest.raises(AcquireError, match="does not exist"):
        acquire_dataset("ds", {"images": {"path": str(tmp_path / "nope.tgz")}}, raw_dir)


def test_extract_false_keeps_the_archive(source, raw_dir):
    archive = make_tgz(source / "people.tgz", TREE)
    manifest = acquire_dataset("ds", {"images": {"path": str(archive), "extract": False}}, raw_dir)
    assert manifest["images"]["path"] == str(archive.absolute())


def test_extract_true_sniffs_an_unusual_name(source, raw_dir):
    archive = make_zip(source / "people.bin", TREE)
    manifest = acquire_dataset("ds", {"images": {"path": str(archive), "extract": True}}, raw_dir)
    assert files_under(Path(manifest["images"]["path"])) == TREE


# ----------------------------------------------------------------------------------------------
# checksums


def test_checksum_mismatch_of_a_local_file(source, raw_dir):
    archive = make_tgz(source / "people.tgz", TREE)
    wrong = "0" * 32
    with pytest.raises(ChecksumError) as err:
        acquire_dataset("ds", {"images": {"path": str(archive), "md5": wrong}}, raw_dir)
    message = str(err.value)
    assert str(archive) in message and wrong in message and digest(archive, "md5") in message
    assert "fresh copy" in message
    assert not (raw_dir / "images").exists()


def test_checksum_mismatch_of_a_download_leaves_nothing(source, raw_dir):
    archive = make_tgz(source / "people.tgz", TREE)
    with pytest.raises(ChecksumError, match="sha256 checksum mismatch"):
        acquire_dataset("ds", {"images": {"url": archive.as_uri(), "sha256": "a" * 64}}, raw_dir)
    assert list((raw_dir / "downloads").iterdir()) == []
    assert not (raw_dir / "images").exists()


def test_malformed_checksum_in_config(source, raw_dir):
    archive = make_tgz(source / "people.tgz", TREE)
    with pytest.raises(AcquireError, match="files.images.md5"):
        acquire_dataset("ds", {"images": {"path": str(archive), "md5": "abc"}}, raw_dir)


# ----------------------------------------------------------------------------------------------
# checksum lock: sources without a published checksum are pinned on first use


def lock_of(raw_dir: Path) -> dict[str, str]:
    return json.loads((raw_dir / LOCK_FILE).read_text())


def run_step(raw_dir: Path, files: dict) -> dict:
    """The acquire stage as the workflow runs it (Snakemake deletes the old manifest first)."""
    out = raw_dir / "acquired.json"
    out.unlink(missing_ok=True)
    return acquire("ds", {"layout": "folder", "files": files}, 0, out)


def test_lock_records_on_first_acquisition_then_verifies(source, raw_dir):
    archive = make_tgz(source / "people.tgz", TREE)
    pairs = source / "pairs.txt"
    pairs.write_text("2\t60\n")
    files = {"images": {"path": str(archive), "md5": None, "sha256": None}, "pairs": {"path": str(pairs)}}
    first = run_step(raw_dir, files)
    assert lock_of(raw_dir) == {"ds/images": digest(archive), "ds/pairs": digest(pairs)}
    assert first["images"]["sha256"] == digest(archive)
    lock_bytes = (raw_dir / LOCK_FILE).read_bytes()
    assert run_step(raw_dir, files) == first  # verified against the lock, which stays as it was
    assert (raw_dir / LOCK_FILE).read_bytes() == lock_bytes


def test_changed_file_fails_naming_file_digests_and_fix(source, raw_dir):
    archive = make_tgz(source / "people.tgz", TREE)
    files = {"images": {"path": str(archive)}}
    run_step(raw_dir, files)
    recorded = digest(archive)
    extracted = files_under(raw_dir / "images")
    make_tgz(archive, {"people/Eve/Eve_0001.jpg": b"other"})
    with pytest.raises(ChecksumError) as err:
        run_step(raw_dir, files)
    message = str(err.value)
    for part in (str(archive), recorded, digest(archive), str(raw_dir / LOCK_FILE), "'ds/images'", "delete"):
        assert part in message, part
    assert not (raw_dir / "acquired.json").exists()
    assert files_under(raw_dir / "images") == extracted  # the earlier extraction is left alone
    assert lock_of(raw_dir) == {"ds/images": recorded}


def test_deleting_the_lock_entry_accepts_an_intended_change(source, raw_dir):
    archive = make_tgz(source / "people.tgz", TREE)
    files = {"images": {"path": str(archive)}}
    run_step(raw_dir, files)
    make_tgz(archive, {"people/Eve/Eve_0001.jpg": b"other"})
    (raw_dir / LOCK_FILE).write_text("{}\n")
    manifest = run_step(raw_dir, files)
    assert lock_of(raw_dir) == {"ds/images": digest(archive)}
    assert files_under(Path(manifest["images"]["path"])) == {"people/Eve/Eve_0001.jpg": b"other"}


def test_published_checksums_and_folders_are_not_locked(source, raw_dir):
    archive = make_tgz(source / "people.tgz", TREE)
    (source / "tree" / "Ann").mkdir(parents=True)
    (source / "tree" / "Ann" / "a.jpg").write_bytes(b"a")
    run_step(raw_dir, {"images": {"path": str(archive), "md5": digest(archive, "md5")},
                       "extra": {"path": str(source / "tree")}})
    assert not (raw_dir / LOCK_FILE).exists()


def test_redownload_that_differs_from_the_lock_is_refused(source, raw_dir):
    archive = make_tgz(source / "people.tgz", TREE)
    files = {"images": {"url": archive.as_uri()}}
    run_step(raw_dir, files)
    assert lock_of(raw_dir) == {"ds/images": digest(archive)}
    cached = raw_dir / "downloads" / "people.tgz"
    cached.unlink()  # a fresh machine, or a cleaned cache: the server now serves other bytes
    make_tgz(archive, {"people/Eve/Eve_0001.jpg": b"other"})
    with pytest.raises(ChecksumError, match="delete the 'ds/images' entry"):
        run_step(raw_dir, files)
    assert [p.name for p in (raw_dir / "downloads").iterdir()] == []  # no partial, no bad copy


def test_lock_is_saved_when_a_later_file_fails(source, raw_dir):
    archive = make_tgz(source / "people.tgz", TREE)
    files = {"images": {"path": str(archive)}, "pairs": {"manual": "Download pairs.txt by hand."}}
    with pytest.raises(ManualDownloadRequired):
        run_step(raw_dir, files)
    assert lock_of(raw_dir) == {"ds/images": digest(archive)}


@pytest.mark.parametrize("content", ["not json", '{"ds/images": "abc"}', "[1, 2]"])
def test_malformed_lock_names_the_lock_file(source, raw_dir, content):
    archive = make_tgz(source / "people.tgz", TREE)
    raw_dir.mkdir(parents=True)
    (raw_dir / LOCK_FILE).write_text(content)
    with pytest.raises(AcquireError) as err:
        run_step(raw_dir, {"images": {"path": str(archive)}})
    assert str(raw_dir / LOCK_FILE) in str(err.value)
    assert not (raw_dir / "acquired.json").exists()


def test_lock_in_memory_without_a_file(source, raw_dir):
    archive = make_tgz(source / "people.tgz", TREE)
    lock = ChecksumLock()
    acquire_dataset("ds", {"images": {"path": str(archive)}}, raw_dir, lock=lock)
    assert lock.digests == {"ds/images": digest(archive)} and lock.changed
    make_tgz(archive, {"other/file.jpg": b"x"})
    with pytest.raises(ChecksumError, match="the checksum lock"):
        acquire_dataset("ds", {"images": {"path": str(archive)}}, raw_dir, lock=lock)


@pytest.mark.slow
def test_acquire_rule_records_the_lock_and_fails_in_one_line(tmp_path, source):
    """Through Snakemake: the rule writes the lock, and a changed source fails with one clear line."""
    from conftest import copy_workflow, snakemake

    archive = make_tgz(source / "people.tgz", TREE)
    work = copy_workflow(tmp_path / "wf")
    (work / "ds.yaml").write_text(json.dumps({"datasets": {"ds": {
        "layout": "folder", "shards": 1, "protocols": [], "files": {"images": {"path": str(archive)}}}}}))
    target = "resources/raw/ds/acquired.json"
    snakemake(work, "--cores", "1", target, "--configfile", "config/config.yaml", "ds.yaml")
    assert lock_of(work / "resources/raw/ds") == {"ds/images": digest(archive)}
    make_tgz(archive, {"people/Eve/Eve_0001.jpg": b"other"})
    proc = snakemake(work, "--cores", "1", target, "--forcerun", "acquire",
                     "--configfile", "config/config.yaml", "ds.yaml", check=False)
    assert proc.returncode != 0
    assert "error: " + str(archive) in proc.stdout and "Traceback" not in proc.stdout, proc.stdout[-3000:]
    assert "delete the 'ds/images' entry" in proc.stdout
    assert not (work / target).exists()


# ----------------------------------------------------------------------------------------------
# downloads


def test_file_url_download_then_verified_cache(source, raw_dir):
    archive = make_tgz(source / "people.tgz", TREE)
    spec = {"url": archive.as_uri(), "md5": digest(archive, "md5")}
    first = acquire_dataset("ds", {"images": spec}, raw_dir)
    assert first["images"]["source"] == "url"
    assert first["images"]["sha256"] == digest(archive)
    assert (raw_dir / "downloads" / "people.tgz").read_bytes() == archive.read_bytes()
    assert files_under(Path(first["images"]["path"])) == TREE
    marker_inode = (raw_dir / "images" / EXTRACTED_MARKER).stat().st_ino

    archive.unlink()  # the second run must not need the url
    second = acquire_dataset("ds", {"images": spec}, raw_dir)
    assert second["images"] == {**first["images"], "source": "cache"}
    assert (raw_dir / "images" / EXTRACTED_MARKER).stat().st_ino == marker_inode  # not re-extracted


def test_corrupt_cache_is_downloaded_again(source, raw_dir):
    archive = make_tgz(source / "people.tgz", TREE)
    (raw_dir / "downloads").mkdir(parents=True)
    (raw_dir / "downloads" / "people.tgz").write_bytes(b"truncated")
    spec = {"url": archive.as_uri(), "sha256": digest(archive)}
    manifest = acquire_dataset("ds", {"images": spec}, raw_dir)
    assert manifest["images"]["source"] == "url"
    assert (raw_dir / "downloads" / "people.tgz").read_bytes() == archive.read_bytes()


def test_plain_file_download(source, raw_dir):
    pairs = source / "pairs.txt"
    pairs.write_text("2\t60\n")
    manifest = acquire_dataset("ds", {"pairs": {"url": pairs.as_uri(), "md5": digest(pairs, "md5")}}, raw_dir)
    assert manifest["pairs"]["path"] == str((raw_dir / "downloads" / "pairs.txt").absolute())


def test_http_download(source, raw_dir):
    archive = make_tgz(source / "people.tgz", TREE)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(source), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/people.tgz"
        manifest = acquire_dataset("ds", {"images": {"url": url, "md5": digest(archive, "md5")}}, raw_dir)
        with pytest.raises(DownloadError, match="missing.tgz"):
            acquire_dataset("ds", {"other": {"url": url.replace("people", "missing")}}, raw_dir)
    finally:
        server.shutdown()
        server.server_close()
    assert manifest["images"]["source"] == "url"
    assert files_under(Path(manifest["images"]["path"])) == TREE


def test_a_download_cut_short_is_an_error_and_nothing_is_kept_or_pinned(raw_dir):
    class CutShort(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # promises 1,000 bytes, sends 400, closes
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 400)
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CutShort)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    lock = ChecksumLock()
    try:
        with pytest.raises(DownloadError, match="people.tgz"):
            acquire_dataset("ds", {"images": {"url": f"http://127.0.0.1:{server.server_port}/people.tgz"}},
                            raw_dir, lock)
    finally:
        server.shutdown()
        server.server_close()
    assert not (raw_dir / "downloads" / "people.tgz").exists()
    assert lock.digests == {} and not lock.changed


def test_two_entries_downloading_to_one_file_are_refused_and_filename_tells_them_apart(source, raw_dir):
    (source / "view1").mkdir()
    (source / "view2").mkdir()
    (source / "view1" / "pairs.txt").write_text("view 1\n")
    (source / "view2" / "pairs.txt").write_text("view 2\n")
    files = {"train": {"url": (source / "view1" / "pairs.txt").as_uri()},
             "test": {"url": (source / "view2" / "pairs.txt").as_uri()}}
    with pytest.raises(AcquireError, match="files.test and files.train both download to downloads/pairs.txt"):
        acquire_dataset("ds", files, raw_dir)
    assert not (raw_dir / "downloads").exists()  # refused before anything was fetched
    files["test"]["filename"] = "test_pairs.txt"
    manifest = acquire_dataset("ds", files, raw_dir)
    assert Path(manifest["test"]["path"]).read_text() == "view 2\n"
    assert Path(manifest["train"]["path"]).read_text() == "view 1\n"
    assert Path(manifest["test"]["path"]).name == "test_pairs.txt"


def test_a_filename_that_is_not_a_plain_name_is_refused(source, raw_dir):
    pairs = source / "pairs.txt"
    pairs.write_text("1\n")
    with pytest.raises(AcquireError, match="not a plain file name"):
        acquire_dataset("ds", {"pairs": {"url": pairs.as_uri(), "filename": "../checksums.lock.json"}}, raw_dir)


def test_unreachable_url_says_to_use_a_local_path(raw_dir, tmp_path):
    with pytest.raises(DownloadError, match="path:"):
        acquire_dataset("ds", {"images": {"url": (tmp_path / "gone.tgz").as_uri()}}, raw_dir)
    assert [p.name for p in (raw_dir / "downloads").iterdir()] == []


# ----------------------------------------------------------------------------------------------
# manual sets


def test_missing_manual_download_explains_what_to_do(raw_dir):
    spec = {"manual": "Download UTKFace.tar.gz from the UTKFace Google Drive folder.", "filename": "UTKFace.tar.gz"}
    with pytest.raises(ManualDownloadRequired) as err:
        acquire_dataset("utkface", {"images": spec}, raw_dir)
    message = str(err.value)
    assert "UTKFace Google Drive folder" in message
    assert str((raw_dir / "UTKFace.tar.gz").absolute()) in message
    assert "files.images.path" in message


def test_manual_download_in_place_is_used(raw_dir):
    raw_dir.mkdir(parents=True)
    archive = make_tgz(raw_dir / "UTKFace.tar.gz", {"UTKFace/1_0_0_2017.jpg.chip.jpg": b"x"})
    spec = {"manual": "get it", "url": "https://drive.example/UTKFace.tar.gz"}
    manifest = acquire_dataset("utkface", {"images": spec}, raw_dir)
    assert manifest["images"]["source"] == "manual"
    assert manifest["images"]["sha256"] == digest(archive)
    assert (raw_dir / "images" / "UTKFace" / "1_0_0_2017.jpg.chip.jpg").exists()
    assert archive.exists()


def test_manual_with_missing_path_names_the_path(raw_dir, tmp_path):
    with pytest.raises(ManualDownloadRequired, match="elsewhere"):
        acquire_dataset("ds", {"images": {"manual": "get it", "path": str(tmp_path / "elsewhere")}}, raw_dir)


# ----------------------------------------------------------------------------------------------
# extraction: atomic and safe


def test_leftover_partial_extraction_is_not_taken_as_complete(source, raw_dir):
    raw_dir.mkdir(parents=True)
    stale = raw_dir / ".images.partial-old"
    (stale / "people").mkdir(parents=True)
    archive = make_tgz(source / "people.tgz", TREE)
    manifest = acquire_dataset("ds", {"images": {"path": str(archive)}}, raw_dir)
    assert files_under(Path(manifest["images"]["path"])) == TREE
    assert not stale.exists()


def test_foreign_folder_at_the_target_is_not_replaced(source, raw_dir):
    (raw_dir / "images").mkdir(parents=True)
    (raw_dir / "images" / "mine.txt").write_text("keep")
    archive = make_tgz(source / "people.tgz", TREE)
    with pytest.raises(AcquireError, match="not extracted by acquire"):
        acquire_dataset("ds", {"images": {"path": str(archive)}}, raw_dir)
    assert (raw_dir / "images" / "mine.txt").read_text() == "keep"


def test_new_archive_replaces_an_older_extraction(source, raw_dir):
    archive = make_tgz(source / "people.tgz", TREE)
    acquire_dataset("ds", {"images": {"path": str(archive)}}, raw_dir)
    make_tgz(archive, {"people/Cy/Cy_0001.jpg": b"cy"})
    manifest = acquire_dataset("ds", {"images": {"path": str(archive)}}, raw_dir)
    assert files_under(Path(manifest["images"]["path"])) == {"people/Cy/Cy_0001.jpg": b"cy"}
    assert sorted(p.name for p in raw_dir.iterdir()) == ["images"]


def _tar_member(tf: tarfile.TarFile, name: str, data: bytes = b"evil", link: str | None = None,
                kind: bytes = tarfile.REGTYPE) -> None:
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type, info.linkname = kind, link
        tf.addfile(info)
    else:
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))


def _assert_refused(tmp_path, raw_dir, archive, member):
    raw_dir.mkdir(parents=True, exist_ok=True)
    before = snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError) as err:
        acquire_dataset("ds", {"images": {"path": str(archive)}}, raw_dir)
    assert repr(member) in str(err.value)
    assert snapshot(tmp_path) == before  # nothing written anywhere, not even inside raw_dir


@pytest.mark.parametrize("bad", ["../evil.txt", "people/../../evil.txt", "ABSOLUTE"])
def test_tar_with_escaping_member_is_refused(tmp_path, source, raw_dir, bad):
    outside = tmp_path / "outside" / "evil.txt"
    bad = str(outside) if bad == "ABSOLUTE" else bad
    archive = source / "bad.tar"
    with tarfile.open(archive, "w") as tf:
        _tar_member(tf, "people/Ann/Ann_0001.jpg", b"fine")
        _tar_member(tf, bad)
    _assert_refused(tmp_path, raw_dir, archive, bad)
    assert not outside.exists() and not (tmp_path / "raw" / "evil.txt").exists()


@pytest.mark.parametrize("target", ["../../..", "/etc", "ABSOLUTE"])
def test_tar_with_symlink_outside_is_refused(tmp_path, source, raw_dir, target):
    target = str(tmp_path) if target == "ABSOLUTE" else target
    archive = source / "link.tar"
    with tarfile.open(archive, "w") as tf:
        _tar_member(tf, "people/link", link=target, kind=tarfile.SYMTYPE)
        _tar_member(tf, "people/link/evil.txt")
    _assert_refused(tmp_path, raw_dir, archive, "people/link")


def test_tar_with_hardlink_outside_is_refused(tmp_path, source, raw_dir):
    archive = source / "hard.tar"
    with tarfile.open(archive, "w") as tf:
        _tar_member(tf, "people/hard", link="../../../etc/passwd", kind=tarfile.LNKTYPE)
    _assert_refused(tmp_path, raw_dir, archive, "people/hard")


def test_tar_with_device_file_is_refused(tmp_path, source, raw_dir):
    archive = source / "dev.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("people/null")
        info.type = tarfile.CHRTYPE
        tf.addfile(info)
    _assert_refused(tmp_path, raw_dir, archive, "people/null")


@pytest.mark.parametrize("target", ["../people/Ann", "Ann/../../people"])
def test_tar_link_climbing_with_dots_is_refused_even_when_it_lands_inside(tmp_path, source, raw_dir, target):
    """A chain of such links escapes tarfile's own filter on some Python versions (CVE-2025-4517);
    a target without '..' cannot climb at all."""
    archive = source / "dots.tar"
    with tarfile.open(archive, "w") as tf:
        _tar_member(tf, "people/Ann/Ann_0001.jpg", b"fine")
        _tar_member(tf, "people/up", link=target, kind=tarfile.SYMTYPE)
    _assert_refused(tmp_path, raw_dir, archive, "people/up")


def test_tar_symlink_inside_is_fine(source, raw_dir):
    archive = source / "ok.tar"
    with tarfile.open(archive, "w") as tf:
        _tar_member(tf, "people/Ann/Ann_0001.jpg", b"fine")
        _tar_member(tf, "people/alias.jpg", link="Ann/Ann_0001.jpg", kind=tarfile.SYMTYPE)
    manifest = acquire_dataset("ds", {"images": {"path": str(archive)}}, raw_dir)
    assert (Path(manifest["images"]["path"]) / "people" / "alias.jpg").read_bytes() == b"fine"


def _raw_zip(path: Path, entries: list[tuple[str, bytes, int]]) -> Path:
    """A zip whose member names are written verbatim (ZipFile.writestr keeps them as given)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


@pytest.mark.parametrize("bad", ["../evil.txt", "people/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt",
                                 "..\\evil.txt"])
def test_zip_with_escaping_member_is_refused_before_writing(tmp_path, source, raw_dir, bad):
    archive = _raw_zip(source / "bad.zip", [("people/Ann/Ann_0001.jpg", b"fine", 0o100644), (bad, b"evil", 0o100644)])
    _assert_refused(tmp_path, raw_dir, archive, bad)


def test_zip_with_symlink_entry_is_refused(tmp_path, source, raw_dir):
    archive = _raw_zip(source / "link.zip", [("people/link", b"/etc/passwd", stat.S_IFLNK | 0o777)])
    _assert_refused(tmp_path, raw_dir, archive, "people/link")


def test_corrupt_archive_says_to_fetch_again(source, raw_dir):
    bad = source / "bad.tgz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(AcquireError, match="cannot read the tar archive"):
        acquire_dataset("ds", {"images": {"path": str(bad)}}, raw_dir)
    assert [p.name for p in raw_dir.iterdir()] == []


@pytest.mark.parametrize("mode, where", [("w:gz", "middle"), ("w:gz", "crc"), ("w:bz2", "middle"), ("w:xz", "middle")])
def test_a_flipped_byte_in_a_compressed_tar_is_caught_and_nothing_is_kept(source, raw_dir, mode, where):
    """tarfile stops before the compressed stream's trailer: gzip's CRC (its last 8 bytes hold the
    CRC and the size) must still be read; a flip in bzip2 or xz data names the archive too."""
    data = bytes(range(256)) * 800  # little to compress: a flipped byte changes the content, not the layout
    good = source / "good.tar"
    with tarfile.open(good, mode) as tf:
        info = tarfile.TarInfo("people/Ann/Ann_0001.jpg")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    raw = bytearray(good.read_bytes())
    raw[len(raw) // 2 if where == "middle" else -8] ^= 0xFF
    bad = source / "bad.tar"
    bad.write_bytes(bytes(raw))
    with pytest.raises(AcquireError, match="cannot read the tar archive"):
        acquire_dataset("ds", {"images": {"path": str(bad), "extract": True}}, raw_dir)
    assert not (raw_dir / "images").exists()


def test_manifest_is_json_serialisable(source, raw_dir):
    archive = make_tgz(source / "people.tgz", TREE)
    manifest = acquire_dataset("ds", {"images": {"path": str(archive)}}, raw_dir)
    assert json.loads(json.dumps(manifest)) == manifest


# ----------------------------------------------------------------------------------------------
# sets published in several parts (the FEI Face Database layout)


def fei_original_names(subjects: range, poses: range) -> list[str]:
    """FEI original file names: ``<subject>-<pose>.jpg`` at the top of each part."""
    return [f"{s}-{p:02d}.jpg" for s in subjects for p in poses]


def image_bytes(name: str) -> bytes:
    """Stand-in image content, different for every name (the index never opens images)."""
    return b"\xff\xd8 tiny image " + name.encode() + b" \xff\xd9"


def zip_of(path: Path, names: list[str], content=image_bytes) -> Path:
    return make_zip(path, {n: content(n) for n in names})


def index_rows(manifest: dict, layout: str) -> tuple[list[tuple], dict]:
    from maskbench.data.index import build_index

    table, report = build_index(layout, Path(manifest["images"]["path"]), 2)
    got = [(r["image_id"], r["identity"], r["pose"]) for r in table.to_pylist()]
    return got, report


def test_parts_from_urls_are_verified_extracted_together_and_indexed(source, raw_dir):
    # FEI original: subjects split over three parts; subject 2's first image is in two parts
    # (identical bytes, allowed); 201-01.jpg is not a FEI name and must be skipped.
    part_names = [
        fei_original_names(range(1, 3), range(1, 4)),
        fei_original_names(range(3, 5), range(1, 4)) + ["2-01.jpg"],
        fei_original_names(range(5, 6), range(13, 15)) + ["201-01.jpg"],
    ]
    archives = [zip_of(source / f"originalimages_part{i + 1}.zip", names) for i, names in enumerate(part_names)]
    files = {"images": {"parts": [{"url": a.as_uri()} for a in archives], "manual": "get them by hand"}}
    out = raw_dir / "acquired.json"
    manifest = acquire("fei_face_original", {"layout": "fei_face_original", "files": files}, 0, out)

    expected_files = {n: image_bytes(n) for names in part_names for n in names}
    assert files_under(Path(manifest["images"]["path"])) == expected_files
    assert manifest["images"]["path"] == str((raw_dir / "images").absolute())
    assert manifest["images"]["parts"] == [
        {"filename": a.name, "path": str((raw_dir / "downloads" / a.name).absolute()),
         "sha256": digest(a), "source": "url"} for a in archives
    ]
    assert json.loads(out.read_text()) == manifest
    assert lock_of(raw_dir) == {f"fei_face_original/images/{a.name}": digest(a) for a in archives}

    rows, report = index_rows(manifest, "fei_face_original")
    want = sorted((f"{s}-{p:02d}.jpg", str(s), f"{p:02d}")
                  for s, poses in ((1, range(1, 4)), (2, range(1, 4)), (3, range(1, 4)), (4, range(1, 4)),
                                   (5, range(13, 15)))
                  for p in poses)
    assert rows == want
    assert report["identities"] == 5 and report["images"] == 14
    assert report["skipped"] == {"malformed_name": 1}

    # a second run verifies the downloads against the lock and reuses the extraction
    marker_inode = (raw_dir / "images" / EXTRACTED_MARKER).stat().st_ino
    for a in archives:
        a.unlink()  # the urls are not needed any more
    again = acquire("fei_face_original", {"layout": "fei_face_original", "files": files}, 0, out)
    assert [p["source"] for p in again["images"]["parts"]] == ["cache"] * 3
    assert again["images"]["path"] == manifest["images"]["path"]
    assert (raw_dir / "images" / EXTRACTED_MARKER).stat().st_ino == marker_inode


def test_frontal_parts_from_local_paths(source, raw_dir):
    part1 = zip_of(source / "frontalimages_manuallyaligned_part1.zip", ["1a.jpg", "1b.jpg", "2a.jpg", "2b.jpg"])
    part2 = make_zip(source / "frontalimages_manuallyaligned_part2.zip",
                     {"101a.jpg": image_bytes("101a.jpg"), "101b.jpg": image_bytes("101b.jpg"),
                      "notes/readme.txt": b"not an image"})
    before = snapshot(source)
    spec = {"parts": [{"path": str(part1)}, {"path": str(part2), "md5": digest(part2, "md5")}]}
    manifest = acquire_dataset("fei_face_frontal", {"images": spec}, raw_dir)
    assert [(p["path"], p["source"]) for p in manifest["images"]["parts"]] == [
        (str(part1.absolute()), "path"), (str(part2.absolute()), "path")]
    rows, report = index_rows(manifest, "fei_face_frontal")
    assert rows == [("101a.jpg", "101", "a"), ("101b.jpg", "101", "b"), ("1a.jpg", "1", "a"),
                    ("1b.jpg", "1", "b"), ("2a.jpg", "2", "a"), ("2b.jpg", "2", "b")]
    assert report["skipped"] == {"not_an_image_extension": 1}
    assert snapshot(source) == before  # the parts are only read


def test_tar_and_zip_parts_mix(source, raw_dir):
    part1 = make_tgz(source / "a.tgz", {"set/1-01.jpg": b"one"})
    part2 = make_zip(source / "b.zip", {"set/2-01.jpg": b"two"})
    manifest = acquire_dataset("ds", {"images": {"parts": [{"path": str(part1)}, {"path": str(part2)}]}}, raw_dir)
    assert files_under(Path(manifest["images"]["path"])) == {"set/1-01.jpg": b"one", "set/2-01.jpg": b"two"}


def test_corrupt_part_with_a_checksum_fails_naming_it(source, raw_dir):
    good = zip_of(source / "part1.zip", ["1-01.jpg"])
    bad = zip_of(source / "part2.zip", ["2-01.jpg"])
    md5 = digest(bad, "md5")
    bad.write_bytes(bad.read_bytes()[:-10])  # truncated in transit
    spec = {"parts": [{"path": str(good)}, {"path": str(bad), "md5": md5}]}
    with pytest.raises(ChecksumError) as err:
        run_step(raw_dir, {"images": spec})
    assert str(bad) in str(err.value) and md5 in str(err.value)
    assert sorted(p.name for p in raw_dir.iterdir()) == []  # nothing extracted, nothing pinned


def test_unreadable_part_without_a_checksum_fails_naming_it(source, raw_dir):
    good = zip_of(source / "part1.zip", ["1-01.jpg"])
    bad = source / "part2.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(AcquireError, match="cannot read the zip archive") as err:
        run_step(raw_dir, {"images": {"parts": [{"path": str(good)}, {"path": str(bad)}]}})
    assert str(bad) in str(err.value) and str(good) not in str(err.value)
    assert sorted(p.name for p in raw_dir.iterdir()) == []  # no folder, and no pin for the good part


def test_conflicting_duplicate_member_fails_naming_both_parts(source, raw_dir):
    part1 = make_zip(source / "part1.zip", {"1-01.jpg": b"one", "2-01.jpg": b"two"})
    part2 = make_zip(source / "part2.zip", {"3-01.jpg": b"three"})
    part3 = make_zip(source / "part3.zip", {"2-01.jpg": b"TWO, other bytes"})
    spec = {"parts": [{"path": str(p)} for p in (part1, part2, part3)]}
    with pytest.raises(AcquireError) as err:
        run_step(raw_dir, {"images": spec})
    message = str(err.value)
    assert "'2-01.jpg'" in message and str(part1) in message and str(part3) in message
    assert str(part2) not in message
    assert sorted(p.name for p in raw_dir.iterdir()) == []


def test_conflict_between_a_file_and_a_folder_names_both_parts(source, raw_dir):
    part1 = make_zip(source / "part1.zip", {"people/Ann/a.jpg": b"a"})
    part2 = make_zip(source / "part2.zip", {"people/Ann": b"a file where part1 has a folder"})
    with pytest.raises(AcquireError) as err:
        acquire_dataset("ds", {"images": {"parts": [{"path": str(part1)}, {"path": str(part2)}]}}, raw_dir)
    assert "'people/Ann'" in str(err.value) and str(part1) in str(err.value) and str(part2) in str(err.value)


@pytest.mark.parametrize("via", ["path", "url"])
def test_part_that_changed_since_it_was_pinned_fails_with_the_lock_message(source, raw_dir, via):
    part1 = zip_of(source / "part1.zip", ["1-01.jpg"])
    part2 = zip_of(source / "part2.zip", ["2-01.jpg"])
    key = "url" if via == "url" else "path"
    files = {"images": {"parts": [{key: p.as_uri() if via == "url" else str(p)} for p in (part1, part2)]}}
    run_step(raw_dir, files)
    pinned = digest(part2)
    extracted = files_under(raw_dir / "images")
    zip_of(part2, ["2-01.jpg", "9-01.jpg"])  # the publisher (or a mirror) now serves other bytes
    if via == "url":
        (raw_dir / "downloads" / "part2.zip").unlink()  # a fresh machine given the committed lock
    with pytest.raises(ChecksumError) as err:
        run_step(raw_dir, files)
    message = str(err.value)
    for text in (pinned, digest(part2), str(raw_dir / LOCK_FILE), "delete the 'ds/images/part2.zip' entry"):
        assert text in message, text
    assert (str(part2) if via == "path" else "part2.zip") in message
    assert lock_of(raw_dir) == {"ds/images/part1.zip": digest(part1), "ds/images/part2.zip": pinned}
    assert files_under(raw_dir / "images") == extracted
    assert not (raw_dir / "acquired.json").exists()


@pytest.mark.parametrize("bad_part", [0, 2])
@pytest.mark.parametrize("member", ["../evil.jpg", "ABSOLUTE", "SYMLINK"])
def test_unsafe_member_in_any_part_is_refused_and_nothing_is_written(tmp_path, source, raw_dir, bad_part, member):
    outside = tmp_path / "outside" / "evil.jpg"
    parts = [make_zip(source / f"part{i}.zip", {f"{i + 1}-01.jpg": b"fine"}) for i in range(3)]
    bad = parts[bad_part]
    if member == "SYMLINK":
        bad = bad.with_suffix(".tar")
        parts[bad_part] = bad
        with tarfile.open(bad, "w") as tf:
            _tar_member(tf, "1-02.jpg", b"fine")
            _tar_member(tf, "link", link="../../outside", kind=tarfile.SYMTYPE)
        member = "link"
    else:
        member = str(outside) if member == "ABSOLUTE" else member
        _raw_zip(bad, [("5-01.jpg", b"fine", 0o100644), (member, b"evil", 0o100644)])
    raw_dir.mkdir(parents=True)
    before = snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError) as err:
        acquire_dataset("ds", {"images": {"parts": [{"path": str(p)} for p in parts]}}, raw_dir)
    assert repr(member) in str(err.value) and str(bad) in str(err.value)
    assert snapshot(tmp_path) == before
    assert not outside.exists()


def test_parts_that_cannot_be_downloaded_fall_back_to_the_manual_steps(source, raw_dir):
    archives = [zip_of(source / f"frontal_part{i}.zip", [f"{i}a.jpg", f"{i}b.jpg"]) for i in (1, 2)]
    gone = source / "offline"
    spec = {"parts": [{"url": (gone / a.name).as_uri()} for a in archives],
            "manual": "Download both frontal parts from the FEI page."}
    with pytest.raises(ManualDownloadRequired) as err:
        acquire_dataset("fei_face_frontal", {"images": spec}, raw_dir)
    message = str(err.value)
    assert "2 of the 2 parts" in message and "Download both frontal parts from the FEI page." in message
    assert "frontal_part1.zip" in message and "frontal_part2.zip" in message
    assert str(raw_dir.absolute()) in message and "files.images.path" in message
    assert [p.name for p in (raw_dir / "downloads").iterdir()] == []

    for a in archives:  # placed by hand where the message says
        (raw_dir / a.name).write_bytes(a.read_bytes())
    manifest = acquire_dataset("fei_face_frontal", {"images": spec}, raw_dir)
    assert [p["source"] for p in manifest["images"]["parts"]] == ["manual", "manual"]
    rows, _ = index_rows(manifest, "fei_face_frontal")
    assert rows == [("1a.jpg", "1", "a"), ("1b.jpg", "1", "b"), ("2a.jpg", "2", "a"), ("2b.jpg", "2", "b")]


def test_failed_download_without_manual_steps_is_a_download_error(source, raw_dir):
    with pytest.raises(DownloadError, match="gone.zip"):
        acquire_dataset("ds", {"images": {"parts": [{"url": (source / "gone.zip").as_uri()}]}}, raw_dir)


def test_entry_path_overrides_all_parts(source, raw_dir):
    (source / "fei" / "1-01.jpg").parent.mkdir()
    (source / "fei" / "1-01.jpg").write_bytes(b"x")
    spec = {"path": str(source / "fei"), "parts": [{"url": (source / "never.zip").as_uri()}]}
    manifest = acquire_dataset("ds", {"images": spec}, raw_dir)
    assert manifest["images"] == {"path": str((source / "fei").absolute()), "sha256": None, "source": "path"}


@pytest.mark.parametrize("spec, fragment", [
    ({"parts": []}, "non-empty list"),
    ({"parts": [{"url": "file:///a/p1.zip"}], "url": "file:///a/all.zip"}, "both `url` and `parts`"),
    ({"parts": [{"url": "file:///a/p1.zip"}], "extract": False}, "extract: false"),
    ({"parts": [{"url": "file:///a/p1.zip", "manual": "x"}]}, "unknown keys ['manual']"),
    ({"parts": [{"md5": "0" * 32}]}, "parts[0] needs a `url`, a `path`"),
    ({"parts": [{"url": "file:///a/p.zip"}, {"url": "file:///b/p.zip"}]}, "same file name 'p.zip'"),
    ({"parts": [{"url": "file:///a/p.zip", "filename": "../p.zip"}]}, "not a plain file name"),
    ({"parts": [{"url": "file:///a/p.zip", "md5": "abc"}]}, "files.images.parts[0].md5"),
])
def test_bad_parts_config_fails_before_fetching(raw_dir, spec, fragment):
    with pytest.raises(AcquireError) as err:
        acquire_dataset("ds", {"images": spec}, raw_dir)
    assert fragment in str(err.value)
    assert not (raw_dir / "downloads").exists()


def test_folder_given_as_a_part_says_to_use_the_entry_path(source, raw_dir):
    with pytest.raises(AcquireError, match="files.images.path to it instead"):
        acquire_dataset("ds", {"images": {"parts": [{"path": str(source)}]}}, raw_dir)


@pytest.mark.parametrize("dataset, layout_names", [
    ("fei_face_original", lambda i: fei_original_names(range(50 * i - 49, 50 * i - 47), range(1, 3))),
    ("fei_face_frontal", lambda i: [f"{s}{e}" + ".jpg" for s in (100 * i - 99, 100 * i) for e in "ab"]),
])
def test_paper_config_fei_entries_acquire_offline_from_placed_parts(raw_dir, dataset, layout_names):
    """config/paper.yaml's FEI entries: every part has an FEI url and no checksum (pinned on use)."""
    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "paper.yaml").read_text())
    entry = config["datasets"][dataset]
    spec = entry["files"]["images"]
    assert spec["manual"].strip() and all(
        p["url"].startswith("https://fei.edu.br/~cet/") and set(p) == {"url"} for p in spec["parts"])
    raw_dir.mkdir(parents=True)
    names = []
    for i, part in enumerate(spec["parts"], 1):  # fabricated stand-ins, placed by hand
        names += layout_names(i)
        zip_of(raw_dir / part["url"].rsplit("/", 1)[1], layout_names(i))
    manifest = acquire(dataset, {**entry, "files": {"images": spec}}, 0, raw_dir / "acquired.json")
    assert len(manifest["images"]["parts"]) == {"fei_face_original": 4, "fei_face_frontal": 2}[dataset]
    assert len(lock_of(raw_dir)) == len(spec["parts"])
    rows, report = index_rows(manifest, entry["layout"])
    assert sorted(r[0] for r in rows) == sorted(names) and report["skipped"] == {}


def test_part_that_is_not_an_archive_fails_naming_it(source, raw_dir):
    good = zip_of(source / "part1.zip", ["1-01.jpg"])
    plain = source / "part2.bin"
    plain.write_bytes(b"just bytes")
    with pytest.raises(AcquireError, match=r"files\.images\.parts\[1\]: .*part2\.bin is not a tar or zip"):
        acquire_dataset("ds", {"images": {"parts": [{"path": str(good)}, {"path": str(plain)}]}}, raw_dir)
    assert not (raw_dir / "images").exists()
