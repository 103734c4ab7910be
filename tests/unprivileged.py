"""Run commands without the privileges that bypass permission bits, so read-only is real.

Tests run as root here and in CI, and root ignores permission bits through three capabilities
(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER). ``setpriv`` removes them from the bounding
set, so the command and all its children stay root-owned (they can use the project's virtualenv
wherever it lives) but a folder without write bits cannot be written and a file without read bits
cannot be read. Switching to ``nobody`` would do the same, but cannot run an interpreter kept
under root's home (as here). When not root, the bits already apply. ``lock_immutable``
(chattr +i) is the fallback that makes a folder read-only even for a fully privileged root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

OVERRIDES = ("dac_override", "dac_read_search", "fowner", "linux_immutable")


def _denies_reading(prefix: list[str]) -> bool:
    """Whether a file without read bits is really unreadable under ``prefix``."""
    with tempfile.TemporaryDirectory() as folder:
        secret = Path(folder) / "secret"
        secret.write_text("x")
        secret.chmod(0)
        try:
            proc = subprocess.run([*prefix, "cat", str(secret)], capture_output=True, timeout=30)
        except OSError:
            return False
        return proc.returncode != 0


def restricted_prefix() -> tuple[list[str] | None, str]:
    """(command prefix under which permission bits apply, how) or (None, why that is impossible)."""
    if os.geteuid() != 0:
        return [], f"running as uid {os.geteuid()}: permission bits apply as they are"
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None, "running as root (which ignores permission bits) and `setpriv` is not installed"
    prefix = [setpriv, "--bounding-set", ",".join(f"-{c}" for c in OVERRIDES), "--inh-caps", "-all"]
    if not _denies_reading(prefix):
        return None, "running as root and setpriv cannot drop the capabilities that bypass permission bits"
    return prefix, f"root without {', '.join(c.upper() for c in OVERRIDES)} (setpriv --bounding-set)"


def make_read_only(path: Path) -> None:
    """Remove every write bit below (and of) ``path``."""
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode & 0o555)
        os.chmod(dirpath, os.stat(dirpath).st_mode & 0o555)


def make_writable(path: Path) -> None:
    """Give the owner write (and search) permission again, so pytest can clean up."""
    for dirpath, dirnames, filenames in os.walk(path):
        os.chmod(dirpath, os.stat(dirpath).st_mode | 0o700)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | 0o600)


def run_restricted(prefix: list[str], cmd: list[str], cwd: Path, timeout: float = 3000) -> subprocess.CompletedProcess:
    """Run ``cmd`` under ``prefix`` with the virtualenv first on PATH; stdout and stderr in ``.stdout``."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run([*prefix, *cmd], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)


def snakemake_exe() -> str:
    exe = Path(sys.executable).parent / "snakemake"
    return str(exe) if exe.exists() else "snakemake"


@contextlib.contextmanager
def lock_immutable(path: Path) -> Iterator[bool]:
    """chattr +i on everything below ``path`` (read-only even for root); yields False if unsupported."""
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "-R", "+i", str(path)], capture_output=True).returncode != 0:
        if chattr:
            subprocess.run([chattr, "-R", "-i", str(path)], capture_output=True)
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run([chattr, "-R", "-i", str(path)], capture_output=True)
