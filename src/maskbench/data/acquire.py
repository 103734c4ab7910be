"""Acquire a dataset's files: find or download them, verify checksums, extract archives safely.

A dataset's config entry names its files (``files: {images: {url, md5, extract}, ...}``). Each file
is taken, in this order, from

1. ``path`` - a local file or folder (HPC users often have the data already); a folder is used in
   place, an archive is extracted, nothing at ``path`` is ever modified;
2. ``manual`` - a set behind a login: the file must already sit at ``raw_dir/<filename>`` (or at
   ``path``), otherwise :class:`ManualDownloadRequired` says what to download and where to put it;
3. ``raw_dir/downloads/<basename>`` - an earlier download, reused only if its checksum verifies;
4. ``url`` - downloaded to a temporary file, verified, then renamed into ``raw_dir/downloads``.

A set published as several archives is one entry with ``parts: [{url, md5}, ...]``: each part is
found the same way (its own ``path``, placed by hand at ``raw_dir/<part file name>``, an earlier
download, its ``url``), verified, and all parts are extracted into the one folder
``raw_dir/<name>/``; a member in two parts must be identical. The entry's own ``path``, if given,
overrides all the parts, and its ``manual`` text is the fallback when a part cannot be had.

Checksums (``md5`` and/or ``sha256``) are verified before a file is used. A file whose entry has no
published checksum is pinned by a :class:`ChecksumLock`: the first acquisition records its sha256 in
``raw_dir/checksums.lock.json`` and every later one must match it. Archives are extracted
into a temporary folder beside ``raw_dir/<name>/`` and renamed into place when complete, so a killed
extraction never looks finished. Archive members that would land outside the target folder
(absolute paths, ``..``, links pointing outside, device files) are refused.
"""

from __future__ import annotations

import contextlib
import filecmp
import hashlib
import http.client
import json
import logging
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from maskbench.io.atomic import write_json
from maskbench.errors import WRITE_ONLY_ERRNOS, UserError, explain_os_error, explained_os_errors

log = logging.getLogger(__name__)

CHECKSUM_ALGORITHMS = ("md5", "sha256")
TAR_SUFFIXES = (".tgz", ".tar.gz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)
# Written into an extracted folder: which archive it came from, so a re-run can reuse it.
EXTRACTED_MARKER = ".maskbench-extracted.json"
DOWNLOADS = "downloads"
LOCK_FILE = "checksums.lock.json"
_CHUNK = 1 << 20
_HEX = {"md5": 32, "sha256": 64}


class AcquireError(UserError, RuntimeError):
    """A dataset file could not be acquired; the message says which file and what to do."""


class ChecksumError(AcquireError):
    """A file's content differs from its published or recorded checksum."""


class UnsafeArchiveError(AcquireError):
    """An archive member would be written outside the extraction folder (or is a device file)."""


class ManualDownloadRequired(AcquireError):
    """A dataset behind a login that the user must download by hand."""


class DownloadError(AcquireError):
    """A URL could not be fetched."""


# ----------------------------------------------------------------------------------------------
# checksums


def file_digests(path: Path, algorithms: tuple[str, ...] = CHECKSUM_ALGORITHMS) -> dict[str, str]:
    """Hex digests of a file, all computed in one pass so a large archive is read once."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            for h in hashers.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


def expected_checksums(name: str, spec: dict[str, Any]) -> dict[str, str]:
    """The published checksums of a file spec, checked for shape so a typo fails early."""
    out = {}
    for algo in CHECKSUM_ALGORITHMS:
        value = spec.get(algo)
        if value is None:
            continue
        value = str(value).strip().lower()
        if not re.fullmatch(rf"[0-9a-f]{{{_HEX[algo]}}}", value):
            raise AcquireError(
                f"files.{name}.{algo} = {spec.get(algo)!r} is not a {_HEX[algo]}-digit hex digest; "
                "fix it in the dataset's config entry"
            )
        out[algo] = value
    return out


def check_digests(path: Path, expected: dict[str, str], got: dict[str, str], advice: str) -> None:
    """Raise ChecksumError if any expected digest differs from the one computed."""
    for algo, want in expected.items():
        if got[algo] != want:
            raise ChecksumError(
                f"{path}: {algo} checksum mismatch (expected {want}, got {got[algo]}). {advice}"
            )


class ChecksumLock:
    """sha256 of sources without a published checksum: recorded on first use, verified after.

    Kept per dataset as JSON ``{"<dataset>/<file>": sha256}`` in ``resources/raw/<dataset>/``
    (written by the acquire rule only, beside the data it vouches for, one file per dataset so
    parallel acquire jobs never race). Copy or commit it to pin the same bytes on another machine.
    """

    def __init__(self, path: str | os.PathLike | None = None, digests: dict[str, str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.digests = dict(digests or {})
        self.changed = False

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ChecksumLock":
        """The lock saved at ``path``, or an empty one if there is none yet."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            raise AcquireError(
                f"cannot read the checksum lock {path} ({exc}); repair it, or delete it to record "
                "the checksums of the files acquired next"
            ) from exc
        if not isinstance(data, dict):
            bad = ["(not a JSON object)"]
        else:
            bad = [k for k, v in data.items() if not re.fullmatch(r"[0-9a-fA-F]{64}", str(v))]
        if bad:
            raise AcquireError(
                f"the checksum lock {path} has malformed entries {bad}: each must map "
                "'<dataset>/<file>' to a 64-digit sha256; fix or delete those entries"
            )
        return cls(path, {k: v.lower() for k, v in data.items()})

    def where(self) -> str:
        return str(self.path) if self.path is not None else "the checksum lock"

    def get(self, key: str) -> str | None:
        return self.digests.get(key)

    def record(self, key: str, sha256: str) -> None:
        if self.digests.get(key) != sha256:
            self.digests[key] = sha256
            self.changed = True
            log.info("recorded sha256 %s for %s in %s", sha256, key, self.where())

    def save(self) -> None:
        """Write the lock (atomically) if an entry was added."""
        if self.path is not None and self.changed:
            write_json(self.path, self.digests)
            self.changed = False


# ----------------------------------------------------------------------------------------------
# sources


def url_basename(url: str) -> str:
    """The file name a URL downloads to (its last path segment)."""
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name:
        raise AcquireError(f"cannot derive a file name from the url {url!r}; add `filename:` to the entry")
    return name


def spec_filename(name: str, spec: dict[str, Any]) -> str:
    """The file's own name: explicit ``filename``, else the url's basename, else the entry name."""
    if spec.get("filename"):
        return str(spec["filename"])
    if spec.get("url"):
        return url_basename(spec["url"])
    return name


def _remove_stale(folder: Path, pattern: str) -> None:
    """Delete leftovers of a killed earlier run (our own temporary files only)."""
    for stale in folder.glob(pattern):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                stale.unlink()


def download(url: str, dest: Path, expected: dict[str, str], timeout: float = 60.0,
             advice: str = "") -> dict[str, str]:
    """Fetch ``url`` into ``dest`` via a temporary file, verified before it is renamed into place.

    Returns the file's digests. A failed or mismatching download leaves nothing at ``dest``.
    """
    with explained_os_errors(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(dest.parent, f".{dest.name}.*.partial")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        log.info("downloading %s -> %s", url, dest)
        digests = _stream_to(url, fd, timeout, dest)
        check_digests(
            dest, expected, digests,
            advice or f"The download of {url} is corrupt or the server's file changed: run again "
            "to retry, or download it by hand, check it and set `path:` to it.",
        )
        os.replace(tmp, dest)
        return digests
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _stream_to(url: str, fd: int, timeout: float, dest: Path) -> dict[str, str]:
    """Copy a URL's body into an open file descriptor, hashing it on the way."""
    hashers = {a: hashlib.new(a) for a in CHECKSUM_ALGORITHMS}
    request = urllib.request.Request(url, headers={"User-Agent": "maskbench"})
    received = 0
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                received += len(chunk)
                for h in hashers.values():
                    h.update(chunk)
            # an HTTP response that ended before its Content-Length: the bytes still owed are missing
            if getattr(response, "length", None):
                raise DownloadError(
                    f"could not download {url}: the connection closed after {received} bytes, "
                    f"{response.length} short of the announced size. Run again to retry, or download the "
                    "file another way and set `path:` in the dataset's files entry to the local copy."
                )
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno in WRITE_ONLY_ERRNOS:
            raise explain_os_error(exc, dest) from exc  # the disk, not the network
        raise DownloadError(
            f"could not download {url}: {exc}. Check the address and the network, or download the "
            "file another way and set `path:` in the dataset's files entry to the local copy."
        ) from exc
    return {a: h.hexdigest() for a, h in hashers.items()}


# ----------------------------------------------------------------------------------------------
# safe extraction


def archive_kind(path: Path) -> str | None:
    """'tar' or 'zip' from the file name, or None for a plain file."""
    lower = path.name.lower()
    if lower.endswith(TAR_SUFFIXES):
        return "tar"
    if lower.endswith(ZIP_SUFFIXES):
        return "zip"
    return None


def _content_kind(path: Path) -> str | None:
    """'zip' or 'tar' from the file's content, None if it is neither."""
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    return None


def _sniff_kind(path: Path) -> str:
    """Archive type from the content, for ``extract: true`` on an unusual file name."""
    kind = _content_kind(path)
    if kind:
        return kind
    raise AcquireError(
        f"{path}: `extract: true` but this is not a tar or zip archive (7z and split archives are not "
        "supported); unpack it yourself and set `path:` to the unpacked folder"
    )


def _unsafe_name_reason(name: str) -> str | None:
    """Why an archive member name could escape the target folder, or None if it cannot."""
    norm = name.replace("\\", "/")
    if norm.startswith("/"):
        return "absolute path"
    if re.match(r"^[A-Za-z]:", norm):
        return "Windows drive path"
    if ".." in norm.split("/"):
        return "path contains '..'"
    if "\x00" in norm:
        return "NUL byte in name"
    return None


def _checked_tar_members(tf: tarfile.TarFile, archive: Path) -> Iterator[tarfile.TarInfo]:
    """Yield members one by one (a single pass over a compressed stream), refusing bad names and
    links whose target is absolute or climbs with '..': tarfile's ``data`` filter alone lets a
    chain of links escape on some Python versions (CVE-2025-4517), a target without '..' cannot."""
    for member in tf:
        reason = _unsafe_name_reason(member.name)
        if reason:
            raise UnsafeArchiveError(_unsafe_message(archive, member.name, reason))
        if (member.issym() or member.islnk()) and _unsafe_name_reason(member.linkname):
            raise UnsafeArchiveError(
                f"{archive}: member {member.name!r} is a link to {member.linkname!r}; links that are absolute "
                "or climb with '..' are not extracted (nothing was written outside the extraction folder). "
                "If you trust the archive, unpack it yourself and set `path:` to the folder."
            )
        yield member


def _unsafe_message(archive: Path, member: str, reason: str) -> str:
    return (
        f"{archive}: refusing to extract member {member!r} ({reason}). The archive is corrupt or "
        "not the expected file; nothing outside the extraction folder was written. Get a fresh "
        "copy from the official source."
    )


def extract_tar(archive: Path, dest: Path) -> None:
    """Extract with tarfile's ``data`` filter: no absolute paths, ``..``, outside links or devices."""
    if not hasattr(tarfile, "data_filter"):
        raise AcquireError(
            f"cannot extract {archive} safely: this Python lacks tarfile extraction filters; "
            "use Python 3.11.4 or newer"
        )
    try:
        with tarfile.open(archive, "r:*") as tf:
            tf.extractall(dest, members=_checked_tar_members(tf, archive), filter="data")
            # tarfile stops at the end-of-archive blocks, before a compressed stream's trailer:
            # read on to the end, so that gzip's CRC (bzip2's, xz's checks) is verified
            while tf.fileobj.read(_CHUNK):
                pass
    except tarfile.FilterError as exc:
        member = exc.tarinfo.name if getattr(exc, "tarinfo", None) else "?"
        raise UnsafeArchiveError(_unsafe_message(archive, member, str(exc))) from exc
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # the disk or the file system, not the archive's content
        raise AcquireError(
            f"{archive}: cannot read the tar archive ({exc}); delete it and acquire again, "
            "or replace the local copy"
        ) from exc


def _zip_member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member is refused: unsafe name, or a symlink/device entry."""
    reason = _unsafe_name_reason(info.filename)
    if reason:
        return reason
    mode = info.external_attr >> 16  # Unix file type and permissions live in the high 16 bits
    if stat.S_ISLNK(mode):
        return "symbolic link entry"
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "special file entry"
    return None


def extract_zip(archive: Path, dest: Path) -> None:
    """Check every member first, then extract: a bad member means nothing is written at all."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                reason = _zip_member_problem(info)
                if reason:
                    raise UnsafeArchiveError(_unsafe_message(archive, info.filename, reason))
            zf.extractall(dest)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as exc:
        raise AcquireError(
            f"{archive}: cannot read the zip archive ({exc}); delete it and acquire again, "
            "or replace the local copy"
        ) from exc


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / EXTRACTED_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def extract_archive(archive: Path, target: Path, kind: str, archive_sha256: str) -> Path:
    """Extract into ``target`` through a temporary folder renamed into place when complete.

    An earlier extraction of the same archive (recognised by its marker file) is reused; one of
    a different archive is replaced. A folder at ``target`` not made by us is never touched.
    """
    marker = {"archive": archive.name, "archive_sha256": archive_sha256}

    def fill(out: Path, _scratch: Path) -> None:
        log.info("extracting %s -> %s", archive, target)
        (extract_zip if kind == "zip" else extract_tar)(archive, out)

    return _extract_into_place(target, marker, ("archive_sha256",), fill)


def _extract_into_place(target: Path, marker: dict[str, Any], identity: tuple[str, ...],
                        fill: Callable[[Path, Path], None]) -> Path:
    """Build ``target`` with ``fill(out, scratch)`` in a temporary folder, then rename it into place.

    ``marker`` is written into the result; an earlier result whose marker agrees on the
    ``identity`` keys is reused as it is. ``scratch`` is a private folder beside ``out`` that is
    removed afterwards.
    """
    previous = _read_marker(target) if target.is_dir() else None
    if previous and all(previous.get(k) == marker[k] for k in identity):
        log.info("reusing %s (already extracted from %s)", target,
                 marker.get("archive") or ", ".join(marker.get("archives", [])))
        return target
    if target.exists() and previous is None:
        raise AcquireError(
            f"{target} exists but was not extracted by acquire; move it away (or point `path:` at "
            "it to use it as is) and run again"
        )
    with explained_os_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(target.parent, f".{target.name}.partial-*")
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        with explained_os_errors(target):
            out, scratch = tmp / "out", tmp / "scratch"
            out.mkdir()
            scratch.mkdir()
            fill(out, scratch)
            (out / EXTRACTED_MARKER).write_text(json.dumps(marker, sort_keys=True) + "\n", encoding="utf-8")
            _swap_into_place(out, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def extract_parts(archives: list[tuple[Path, str, str]], target: Path) -> Path:
    """Extract several archives ``(path, kind, sha256)`` - the parts of one set - into ``target``.

    Each part is extracted safely on its own, then merged in: a member found in two parts must
    have the same content, else the merge fails naming both parts, so the result never depends
    on the order of the parts. Reused or replaced like :func:`extract_archive`.
    """
    marker = {"archives": [a.name for a, _, _ in archives], "parts_sha256": [s for _, _, s in archives]}

    def fill(out: Path, scratch: Path) -> None:
        owners: dict[str, Path] = {}
        for i, (archive, kind, _) in enumerate(archives):
            staged = scratch / str(i)
            staged.mkdir()
            log.info("extracting %s -> %s (part %d of %d)", archive, target, i + 1, len(archives))
            (extract_zip if kind == "zip" else extract_tar)(archive, staged)
            _make_folders_writable(staged)
            _merge_into(staged, out, "", archive, owners)
            shutil.rmtree(staged)

    return _extract_into_place(target, marker, ("parts_sha256",), fill)


def _make_folders_writable(root: Path) -> None:
    """Let the merge move entries out of folders an archive marked read-only (our copy only)."""
    for dirpath, _dirnames, _files in os.walk(root):
        mode = os.stat(dirpath).st_mode
        if mode & 0o700 != 0o700:
            os.chmod(dirpath, mode | 0o700)


def _merge_into(src: Path, dest: Path, rel: str, archive: Path, owners: dict[str, Path]) -> None:
    """Move ``src``'s entries into ``dest``; an entry already there must be identical."""
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        member = f"{rel}{entry.name}"
        there = dest / entry.name
        if not os.path.lexists(there):
            os.rename(entry.path, there)
            owners[member] = archive
            continue
        if entry.is_dir(follow_symlinks=False) and there.is_dir() and not there.is_symlink():
            _merge_into(Path(entry.path), there, member + "/", archive, owners)
            continue
        if not _same_entry(Path(entry.path), there):
            first = _owner(member, owners)
            raise AcquireError(
                f"member {member!r} is in both {first} and {archive} with different content: these "
                "parts do not belong to the same release. Get fresh copies of both from the "
                "official source (or fix the parts list in the config) and run again"
            )


def _owner(member: str, owners: dict[str, Path]) -> Path | str:
    """The part that first wrote ``member`` (or the folder holding it)."""
    while member:
        if member in owners:
            return owners[member]
        member = member.rpartition("/")[0]
    return "an earlier part"


def _same_entry(a: Path, b: Path) -> bool:
    """Two regular files with equal bytes, or two symlinks to the same target."""
    if a.is_symlink() or b.is_symlink():
        return a.is_symlink() and b.is_symlink() and os.readlink(a) == os.readlink(b)
    if a.is_file() and b.is_file():
        return filecmp.cmp(a, b, shallow=False)
    return False


def _swap_into_place(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``, moving an older extraction of ours aside first."""
    if not target.exists():
        os.rename(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, old / "x")
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# one file


def _manual_message(dataset: str, name: str, spec: dict[str, Any], expected: Path) -> str:
    steps = str(spec["manual"]).strip()
    return (
        f"dataset {dataset!r}: file {name!r} must be downloaded by hand (it is behind a login).\n"
        f"{steps}\n"
        f"Then put it at {expected.absolute()} - or set datasets.{dataset}.files.{name}.path in the "
        "config to where it already is - and run again."
    )


def _should_extract(spec: dict[str, Any], path: Path) -> str | None:
    """Archive type to extract as, or None to use the file as it is."""
    if path.is_dir():
        return None
    flag = spec.get("extract")
    if flag is False:
        return None
    kind = archive_kind(path)
    if flag and kind is None:
        kind = _sniff_kind(path)
    return kind


def recorded_path(path: str | Path) -> str:
    """A path as the manifest records it: relative to the working directory where it was given so
    (every path of a run is), absolute only where it was given absolute, so the manifest's bytes do
    not depend on where the working directory is and a moved run directory still finds its files."""
    return os.path.normpath(path)


def _finish(name: str, spec: dict[str, Any], file: Path, digests: dict[str, str], source: str,
            raw_dir: Path) -> dict[str, Any]:
    """The manifest entry: extract an archive if needed, else point at the file."""
    kind = _should_extract(spec, file)
    usable = extract_archive(file, raw_dir / name, kind, digests["sha256"]) if kind else file
    return {"path": recorded_path(usable), "sha256": digests["sha256"], "source": source}


def _lock_key(dataset: str, name: str) -> str:
    return f"{dataset}/{name}"


def _expectation(dataset: str, name: str, spec: dict[str, Any], lock: ChecksumLock | None,
                 key: str | None = None) -> tuple[dict[str, str], str]:
    """Checksums a copy must have (published, else from the lock) and advice for a mismatch."""
    expected = expected_checksums(name, spec)
    key = key or _lock_key(dataset, name)
    if expected or lock is None or lock.get(key) is None:
        return expected, ""
    where = spec.get("url") or "the original source"
    return (
        {"sha256": lock.get(key)},
        f"The expected sha256 was recorded in {lock.where()} under {key!r} when this file was "
        f"first acquired. Get a fresh copy from {where}; if the change is intended (the publisher "
        f"changed the file, or you switched to another copy), delete the {key!r} entry from "
        f"{lock.where()} and run again to record the new checksum.",
    )


def _record(dataset: str, name: str, spec: dict[str, Any], lock: ChecksumLock | None,
            entry: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    """Pin the sha256 of a successfully acquired file that has no published checksum."""
    key = key or _lock_key(dataset, name)
    if lock is not None and entry["sha256"] and not expected_checksums(name, spec) and lock.get(key) is None:
        lock.record(key, entry["sha256"])
    return entry


def _from_local(dataset: str, name: str, spec: dict[str, Any], local: Path, source: str,
                raw_dir: Path, lock: ChecksumLock | None) -> dict[str, Any]:
    """A file or folder already on disk (``path`` or a manual download), only ever read."""
    if local.is_dir():
        log.info("%s/%s: using the folder %s in place", dataset, name, local)
        return {"path": recorded_path(local), "sha256": None, "source": source}
    expected, lock_advice = _expectation(dataset, name, spec, lock)
    digests = _verify_local(local, spec, expected, lock_advice)
    return _record(dataset, name, spec, lock, _finish(name, spec, local, digests, source, raw_dir))


def _verify_local(local: Path, spec: dict[str, Any], expected: dict[str, str], lock_advice: str) -> dict[str, str]:
    """Digests of a file on disk, checked against what it must be."""
    where = spec.get("url") or "the official source"
    advice = lock_advice or (
        f"The local copy is not the expected file: replace it with a fresh copy from {where}, "
        "or correct the checksum in the config if you checked that the publisher changed the file."
    )
    with explained_os_errors(local, "read"):
        digests = file_digests(local)
    check_digests(local, expected, digests, advice)
    return digests


def _from_cache(cached: Path, expected: dict[str, str]) -> dict[str, str] | None:
    """Digests of an earlier download if it still verifies, else None (download again)."""
    digests = file_digests(cached)
    try:
        check_digests(cached, expected, digests, "")
    except ChecksumError as exc:
        log.warning("%s; downloading it again", exc)
        return None
    return digests


def _from_url(dataset: str, name: str, spec: dict[str, Any], raw_dir: Path,
              lock: ChecksumLock | None) -> dict[str, Any]:
    """A verified earlier download, else a fresh one."""
    expected, lock_advice = _expectation(dataset, name, spec, lock)
    cached = raw_dir / DOWNLOADS / spec_filename(name, spec)
    digests = _from_cache(cached, expected) if cached.is_file() else None
    source = "cache"
    if digests is None:
        digests = download(spec["url"], cached, expected, advice=lock_advice)
        source = "url"
    return _record(dataset, name, spec, lock, _finish(name, spec, cached, digests, source, raw_dir))


# ----------------------------------------------------------------------------------------------
# a set published as several archives


PART_KEYS = ("url", "path", "md5", "sha256", "filename")


@dataclass(frozen=True)
class Part:
    """One archive of a multi-part entry (``files.<name>.parts[<index>]``)."""

    index: int
    filename: str
    spec: dict[str, Any]

    def label(self, name: str) -> str:
        return f"{name}.parts[{self.index}]"


def _plain_name(filename: str) -> bool:
    return bool(filename) and filename not in (".", "..") and not re.search(r"[/\\\x00]", filename)


def checked_parts(dataset: str, name: str, spec: dict[str, Any]) -> list[Part]:
    """The parts of an entry, checked so a config mistake fails before anything is fetched."""
    where = f"datasets.{dataset}.files.{name}"
    parts = spec.get("parts")
    if not isinstance(parts, list) or not parts:
        raise AcquireError(f"{where}.parts must be a non-empty list of parts, each with a `url` or a `path`")
    if spec.get("url"):
        raise AcquireError(f"{where} has both `url` and `parts`: move the url into its part")
    if spec.get("extract") is False:
        raise AcquireError(f"{where}: parts are always extracted into one folder; remove `extract: false`")
    out: list[Part] = []
    seen: dict[str, int] = {}
    for i, part in enumerate(parts):
        label = f"{where}.parts[{i}]"
        if not isinstance(part, dict):
            raise AcquireError(f"{label} must be a mapping such as {{url: ..., md5: ...}}, got {part!r}")
        unknown = sorted(set(part) - set(PART_KEYS))
        if unknown:
            raise AcquireError(f"{label} has unknown keys {unknown}; a part takes {list(PART_KEYS)}")
        if part.get("filename"):
            filename = str(part["filename"])
        elif part.get("url"):
            filename = url_basename(str(part["url"]))
        elif part.get("path"):
            filename = Path(str(part["path"])).name
        else:
            raise AcquireError(f"{label} needs a `url`, a `path`, or a `filename` to be placed by hand")
        if not _plain_name(filename):
            raise AcquireError(f"{label}: {filename!r} is not a plain file name; fix `filename:`")
        if filename in seen:
            raise AcquireError(
                f"{label} and {where}.parts[{seen[filename]}] have the same file name {filename!r}; "
                "give one of them another `filename:`"
            )
        seen[filename] = i
        out.append(Part(i, filename, dict(part)))
    return out


def _part_key(dataset: str, name: str, part: Part) -> str:
    """Lock key of a part: by file name, so reordering the parts list keeps the pins."""
    return _lock_key(dataset, f"{name}/{part.filename}")


def _obtain_part(dataset: str, name: str, part: Part, raw_dir: Path,
                 lock: ChecksumLock | None) -> tuple[Path, dict[str, str], str] | None:
    """A verified copy of one part as (file, digests, source), or None if it has no source.

    Looked for at the part's ``path``, then placed by hand at ``raw_dir/<filename>``, then as an
    earlier download, then downloaded from its ``url``.
    """
    label = part.label(name)
    expected, lock_advice = _expectation(dataset, label, part.spec, lock, key=_part_key(dataset, name, part))
    if part.spec.get("path"):
        local = Path(os.path.expanduser(str(part.spec["path"])))
        if not local.exists():
            raise AcquireError(
                f"dataset {dataset!r}: files.{label}.path = {local} does not exist; fix the path, or "
                "remove it to download the part from its url"
            )
        if local.is_dir():
            raise AcquireError(
                f"dataset {dataset!r}: files.{label}.path = {local} is a folder, but a part must be "
                f"an archive; to use a folder that already holds the extracted set, set "
                f"files.{name}.path to it instead"
            )
        return local, _verify_local(local, part.spec, expected, lock_advice), "path"
    placed = raw_dir / part.filename
    if placed.is_file():
        return placed, _verify_local(placed, part.spec, expected, lock_advice), "manual"
    cached = raw_dir / DOWNLOADS / part.filename
    digests = _from_cache(cached, expected) if cached.is_file() else None
    if digests is not None:
        return cached, digests, "cache"
    if not part.spec.get("url"):
        return None
    return cached, download(part.spec["url"], cached, expected, advice=lock_advice), "url"


def _missing_parts_message(dataset: str, name: str, spec: dict[str, Any], n_parts: int,
                           missing: list[tuple[Part, str]], raw_dir: Path) -> str:
    lines = [f"  {part.filename}: {reason}" for part, reason in missing]
    steps = str(spec.get("manual") or "").strip()
    return (
        f"dataset {dataset!r}: {len(missing)} of the {n_parts} parts of files.{name} could not be "
        "acquired:\n" + "\n".join(lines) + "\n" + (f"{steps}\n" if steps else "")
        + f"Put each missing part, under the name shown, in {raw_dir.absolute()} (or set its `path`), "
        f"or set datasets.{dataset}.files.{name}.path to a folder that already holds the whole "
        "extracted set - and run again."
    )


def _part_kind(file: Path, label: str) -> str:
    """'zip' or 'tar', from the name or else the content: every part must be an archive."""
    kind = archive_kind(file) or _content_kind(file)
    if kind:
        return kind
    raise AcquireError(
        f"files.{label}: {file} is not a tar or zip archive; every part must be one (get a fresh "
        "copy, or unpack the parts yourself and set the entry's `path:` to the folder)"
    )


def acquire_parts(dataset: str, name: str, spec: dict[str, Any], raw_dir: Path,
                  lock: ChecksumLock | None = None) -> dict[str, Any]:
    """Acquire every part of an entry and extract them all into ``raw_dir/<name>``.

    Each part is verified (published checksum, else pinned in ``lock`` on first use) before
    anything is extracted. Parts that cannot be had (no source, or a failed download) are listed
    together with the entry's ``manual`` steps. The pins are recorded only once the whole set
    extracted cleanly. Returns the manifest entry, with one record per part.
    """
    parts = checked_parts(dataset, name, spec)
    got: list[tuple[Part, Path, dict[str, str], str]] = []
    missing: list[tuple[Part, str]] = []
    for part in parts:
        try:
            found = _obtain_part(dataset, name, part, raw_dir, lock)
        except DownloadError as exc:
            if not spec.get("manual"):
                raise
            found, why = None, f"download failed ({exc.__cause__ or exc})"
        else:
            why = f"not found at {raw_dir.absolute() / part.filename} and no url to download it from"
        if found is None:
            missing.append((part, why))
        else:
            got.append((part, *found))
    if missing:
        message = _missing_parts_message(dataset, name, spec, len(parts), missing, raw_dir)
        raise ManualDownloadRequired(message) if spec.get("manual") else AcquireError(message)
    archives = [(file, _part_kind(file, part.label(name)), d["sha256"]) for part, file, d, _ in got]
    target = extract_parts(archives, raw_dir / name)
    records = []
    for part, file, digests, source in got:
        record = {"filename": part.filename, "path": recorded_path(file), "sha256": digests["sha256"],
                  "source": source}
        records.append(_record(dataset, part.label(name), part.spec, lock, record,
                               key=_part_key(dataset, name, part)))
    return {"path": recorded_path(target), "sha256": None, "source": "parts", "parts": records}


# ----------------------------------------------------------------------------------------------
# entry point


def acquire_file(dataset: str, name: str, spec: dict[str, Any], raw_dir: Path,
                 lock: ChecksumLock | None = None) -> dict[str, Any]:
    """Make one file of a dataset usable; returns its manifest entry {path, sha256, source}.

    An entry with ``parts`` becomes one folder (see :func:`acquire_parts`); its ``path``, if
    given, overrides all the parts.
    """
    raw_dir = Path(raw_dir)
    if spec.get("path"):
        local = Path(os.path.expanduser(str(spec["path"])))
        if local.exists():
            return _from_local(dataset, name, spec, local, "path", raw_dir, lock)
        if spec.get("manual"):
            raise ManualDownloadRequired(_manual_message(dataset, name, spec, local))
        raise AcquireError(
            f"dataset {dataset!r}: files.{name}.path = {local} does not exist; fix the path, or "
            "remove `path:` to download from the url"
        )
    if spec.get("parts") is not None:
        return acquire_parts(dataset, name, spec, raw_dir, lock)
    if spec.get("manual"):
        placed = raw_dir / spec_filename(name, spec)
        if not placed.exists():
            raise ManualDownloadRequired(_manual_message(dataset, name, spec, placed))
        return _from_local(dataset, name, spec, placed, "manual", raw_dir, lock)
    if not spec.get("url"):
        raise AcquireError(
            f"dataset {dataset!r}: files.{name} needs a `url`, a `path` or `manual` instructions"
        )
    return _from_url(dataset, name, spec, raw_dir, lock)


def acquire_dataset(dataset: str, files: dict[str, dict[str, Any]], raw_dir: Path,
                    lock: ChecksumLock | None = None) -> dict[str, Any]:
    """Acquire every file of a dataset; returns the manifest the caller saves as acquired.json.

    ``lock`` is checked and extended for files without a published checksum; the caller saves it
    (also when a later file fails, so what was verified stays pinned).
    """
    raw_dir = Path(raw_dir)
    with explained_os_errors(raw_dir):
        raw_dir.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, spec in sorted(files.items()):
        if name in (DOWNLOADS,) or name.startswith(".") or "/" in name or "\\" in name:
            raise AcquireError(f"dataset {dataset!r}: {name!r} cannot be a file entry name; rename it")
    check_download_names(dataset, files)
    for name, spec in sorted(files.items()):
        manifest[name] = acquire_file(dataset, name, dict(spec or {}), raw_dir, lock)
    return manifest


def check_download_names(dataset: str, files: dict[str, dict[str, Any]]) -> None:
    """Refuse two entries (or parts of two entries) that would download to one file of
    ``downloads/`` (URLs ending alike, such as ``.../view1/pairs.txt`` and ``.../view2/pairs.txt``):
    each would take the other's cached copy."""
    owner: dict[str, str] = {}
    for name, spec in sorted(files.items()):
        spec = dict(spec or {})
        if spec.get("parts") is not None:
            named = [(f"{name}.parts[{p.index}]", p.filename) for p in checked_parts(dataset, name, spec)
                     if p.spec.get("url")]
        else:
            named = [(name, spec_filename(name, spec))] if spec.get("url") else []
            if named and not _plain_name(named[0][1]):
                raise AcquireError(f"dataset {dataset!r}: files.{name}: {named[0][1]!r} is not a plain file name; "
                                   "fix `filename:`")
        for label, filename in named:
            if filename in owner:
                raise AcquireError(
                    f"dataset {dataset!r}: files.{owner[filename]} and files.{label} both download to "
                    f"{DOWNLOADS}/{filename}; give one of them another `filename:`"
                )
            owner[filename] = label
