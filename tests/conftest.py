"""Shared fixtures: the real-face fixtures folder and running the workflow in a temporary copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (or $MASKBENCH_SHARED_DATA), if present."""
    env = os.environ.get("MASKBENCH_SHARED_DATA")
    candidate = Path(env) if env else REPO.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("real face fixtures not found: set MASKBENCH_SHARED_DATA or place them at ../shared/data")
    return path


def copy_workflow(dest: Path) -> Path:
    """A runnable copy of the workflow (Snakefile, workflow/, config/, envs/, profiles/, library)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "Snakefile", dest / "Snakefile")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("workflow", "config", "src", "envs", "profiles"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore, dirs_exist_ok=True)
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 3000) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir``; its messages (stdout and stderr together) are in ``.stdout``."""
    exe = Path(sys.executable).parent / "snakemake"
    cmd = [str(exe) if exe.exists() else "snakemake", *args]
    proc = subprocess.run(
        cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
    return proc


# fixtures that read the real-face fixtures folder (directly or through another fixture)
REAL_DATA_FIXTURES = {"shared_data", "lfw_chips"}


def pytest_collection_modifyitems(config, items):
    """Every test that needs ../shared/data carries the ``realdata`` marker (``-m realdata`` /
    ``-m "not realdata"`` select them), found from its fixtures so no test can miss it."""
    for item in items:
        if REAL_DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.realdata)


def top_level_imports(path) -> set[str]:
    """Top-level names of a file's absolute imports, anywhere in it (a full parse, independent of
    maskbench.code_closure, which the layer and env tests check)."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found
