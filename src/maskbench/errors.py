"""Errors a user can fix: one message naming the file and the fix, not a deep traceback.

Disk full, permission denied and read-only file systems are the file-system failures a long
benchmark run meets most; :func:`explained_os_errors` turns them into a :class:`StorageError`
whose message says which path and what to do. :func:`exit_on_user_error` then prints such an
error (and any other :class:`UserError`) as one line and exits with status 1.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Iterator


class UserError(Exception):
    """An error caused by the input, the config or the machine; its message says how to fix it."""


class StorageError(OSError, UserError):
    """A known file-system failure (disk full, permission denied, read-only) with path and fix."""

    def __init__(self, code: int, message: str, path: str | os.PathLike) -> None:
        super().__init__(code, message)
        self.filename = os.fspath(path)
        self.message = message

    def __str__(self) -> str:
        return self.message


_WRITE_FIX = {
    errno.ENOSPC: "no space left on the device (disk full). Free some space, or run the workflow "
                  "from a working directory on a larger disk (snakemake --directory), then run again",
    errno.EDQUOT: "disk quota exceeded. Free some of your quota, or run the workflow from a working "
                  "directory on another disk (snakemake --directory), then run again",
    errno.EACCES: "permission denied. Make the folder writable for your user (chmod u+w / chown), "
                  "or run from a working directory you own",
    errno.EPERM: "operation not permitted. Make the folder writable for your user (chmod u+w / "
                 "chown, and chattr -i if it is immutable), or run from a working directory you own",
    errno.EROFS: "the file system is read-only. Run the workflow from a working directory on a "
                 "writable disk (snakemake --directory); raw data may stay read-only",
    errno.EFBIG: "the file is larger than the file-size limit (ulimit -f) or the file system allows. "
                 "Raise the limit, or run the workflow from a working directory on another disk",
}
# Failures that can only come from writing: safe to blame on the destination whatever raised them.
WRITE_ONLY_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})
_READ_FIX = {
    errno.EACCES: "permission denied. Make the file readable for your user (chmod u+r / chown)",
    errno.EPERM: "operation not permitted. Make the file readable for your user (chmod u+r / chown)",
}


def explain_os_error(exc: OSError, path: str | os.PathLike, action: str = "write") -> StorageError | None:
    """A :class:`StorageError` for a known failure to ``action`` ('write' or 'read') ``path``, else None."""
    if isinstance(exc, StorageError):
        return exc
    fixes = _WRITE_FIX if action == "write" else _READ_FIX
    fix = fixes.get(exc.errno)
    if fix is None:
        return None
    partial = " Nothing was written under that name." if action == "write" else ""
    return StorageError(exc.errno, f"cannot {action} {os.fspath(path)}: {fix}.{partial}", path)


@contextlib.contextmanager
def explained_os_errors(path: str | os.PathLike, action: str = "write") -> Iterator[None]:
    """Re-raise a known OSError from the block as a StorageError naming ``path`` and the fix."""
    try:
        yield
    except OSError as exc:
        clear = explain_os_error(exc, path, action)
        if clear is None or clear is exc:
            raise
        raise clear from exc


def is_user_error(exc: BaseException) -> bool:
    """True for errors whose message is the whole story (no traceback needed)."""
    return isinstance(exc, UserError)


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn a :class:`UserError` into one line on stderr and exit status 1 (for workflow scripts).

    Put it outside ``log_to`` so the log file records the error before the process exits.
    """
    try:
        yield
    except Exception as exc:
        if not is_user_error(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
