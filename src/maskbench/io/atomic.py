"""Atomic output writing: a reader never sees a half-written file.

Everything is written to a temporary name in the destination folder and renamed into place
(``os.replace`` is atomic on POSIX), so a killed job leaves either the old file or none. A write
that fails (disk full, permission denied, read-only disk) removes its temporary file and raises a
:class:`maskbench.errors.StorageError` naming the destination and the fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from maskbench.errors import WRITE_ONLY_ERRNOS, explain_os_error, explained_os_errors


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``."""
    path = Path(path)
    with explained_os_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and _about_destination(exc, tmp_path, path):
            clear = explain_os_error(exc, path)
            if clear is not None and clear is not exc:
                raise clear from exc
        raise


def _about_destination(exc: OSError, tmp: Path, path: Path) -> bool:
    """Whether an OSError from the block concerns the destination: a permission error may be about
    a file the block reads, so it is explained only when it names no other file."""
    if exc.errno in WRITE_ONLY_ERRNOS:
        return True
    return exc.filename is None or os.fspath(exc.filename) in (str(tmp), str(path))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON with sorted keys so the same content gives the same bytes."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_table(path: str | os.PathLike, table: pa.Table) -> None:
    """Write a Parquet file atomically, without timestamps, so equal tables give equal bytes."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)
