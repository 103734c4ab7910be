"""Which library files a workflow script runs: the import closure of the script inside maskbench.

A rule takes a stamp of these files (their sha256) as input, so editing a module re-runs exactly
the stages that import it (directly or through other modules) and nothing else. Computed from the
source with ``ast`` (nothing is imported), so it costs milliseconds at DAG construction and never
drifts from the code.
"""

from __future__ import annotations

import ast
import os
import re
from functools import lru_cache
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "maskbench"
PACKAGE_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def module_file(module: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The source file of a maskbench module (``maskbench.io.atomic`` -> .../io/atomic.py), if any."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = package_dir.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


# an import statement on its own line(s), at any indentation: only these are parsed, not the whole
# file (parsing every module costs most of a dry run's time otherwise)
_IMPORT = re.compile(r"^[ \t]*((?:from[ \t]+\.*[\w.]*[ \t]+)?import[ \t]+(?:\([^)]*\)|[^\n]*))", re.M)


def _import_nodes(text: str) -> Iterator[ast.AST]:
    for match in _IMPORT.finditer(re.sub(r"#[^\n]*", "", text)):  # comments may hold brackets
        try:
            yield from ast.parse(match.group(1)).body
        except SyntaxError:  # prose that reads like an import, e.g. in a docstring
            continue


@lru_cache(maxsize=None)
def imported_modules(path: Path, package_dir: Path = PACKAGE_DIR) -> frozenset[str]:
    """maskbench modules a file imports anywhere in it (imports inside functions count too)."""
    found: set[str] = set()
    here = _module_name(path, package_dir)
    for node in _import_nodes(path.read_text()):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, here, path)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(m for m in found if module_file(m, package_dir) is not None)


def closure(script: Path, without: tuple[str, ...] = (), package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """Library files ``script`` runs, sorted; modules in ``without`` (and what only they import) are left out."""
    seen: set[str] = set()
    todo = sorted(imported_modules(Path(script), package_dir))
    while todo:
        module = todo.pop()
        if module in seen or module in without:
            continue
        seen.add(module)
        todo.extend(imported_modules(module_file(module, package_dir), package_dir) - seen)
    files = {module_file(m, package_dir) for m in seen}
    return sorted(f for f in files if f.name != "__init__.py" or f.stat().st_size)


def _relative(path: str | Path, base: Path) -> Path | None:
    """``path`` relative to ``base``: as written first (a symlinked checkout or package keeps its
    names), else with symlinks resolved; None outside ``base``."""
    for where, root in ((Path(os.path.abspath(path)), Path(os.path.abspath(base))),
                        (Path(path).resolve(), Path(base).resolve())):
        if where.is_relative_to(root):
            return where.relative_to(root)
    return None


def _module_name(path: Path, package_dir: Path) -> str | None:
    inside = _relative(path, package_dir)
    if inside is None:
        return None
    return ".".join((PACKAGE, *inside.with_suffix("").parts)).removesuffix(".__init__")


def _absolute(node: ast.ImportFrom, here: str | None, path: Path) -> str:
    if not node.level:
        return node.module or ""
    if here is None:
        raise ValueError(f"{path}: relative import outside the {PACKAGE} package")
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def stamp_label(path: str | Path, root: Path = PACKAGE_DIR.parent) -> str:
    """How a stamp names a file: relative to ``root`` (the workflow's checkout; by default the
    package's parent, giving ``maskbench/io/atomic.py``), so a stamp reads the same wherever the
    checkout or the working directory is (see _relative); a file outside ``root`` keeps the path
    given."""
    inside = _relative(path, root)
    return str(path) if inside is None else inside.as_posix()


def _stamp_lines(files: list[str], hashes: dict[str, str] | None = None, root: Path = PACKAGE_DIR.parent) -> list[str]:
    """``sha256  label`` per file (see stamp_label), sorted by label; ``hashes`` (path -> sha256) is
    filled and reused, for one reading of the workflow, whose ~30 scripts' closures share most files."""
    import hashlib

    hashes = {} if hashes is None else hashes
    lines = []
    for f in files:
        if f not in hashes:
            hashes[f] = hashlib.sha256(Path(f).read_bytes()).hexdigest()
        lines.append(f"{hashes[f]}  {stamp_label(f, root)}\n")
    return sorted(lines, key=lambda line: line.split("  ", 1)[1])


def refresh_stamp(files: list[str], out_path: str, hashes: dict[str, str] | None = None,
                  root: Path = PACKAGE_DIR.parent) -> list[str] | None:
    """Bring a code stamp up to date: None where it already records ``files`` as they are (it is
    left untouched, so nothing re-runs), else the labels of the files whose hash changed (all of
    them for a new stamp), after rewriting it. The workflow calls this while it is read, so stamps
    follow the code whatever runs Snakemake: no job, and nothing that depends on the interpreter's
    path or on where the checkout is.
    ``hashes`` shares the files' hashes between the stamps of one reading (never across readings:
    a file rewritten within one timestamp tick would keep its old hash)."""
    lines = _stamp_lines(files, hashes, root)
    out = Path(out_path)
    try:
        old = out.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        old = None
    if old == lines:
        return None
    _write_stamp(lines, out_path)
    return sorted({line.split("  ", 1)[1].rstrip("\n") for line in set(lines) ^ set(old or [])})


def code_stamp(files: list[str], out_path: str, root: Path = PACKAGE_DIR.parent) -> None:
    """Write ``sha256  label`` of each file, sorted by label (see stamp_label): the record of the
    code a stage ran. Rules take this one file as input instead of every file of the closure, which
    keeps a large DAG cheap to plan; it is rewritten, and its stages re-run, when a file changes."""
    _write_stamp(_stamp_lines(files, root=root), out_path)


def _write_stamp(lines: list[str], out_path: str) -> None:
    """Write a stamp atomically, with the standard library only (the Snakefile imports this module,
    so it stays off io.atomic, which reaches pyarrow)."""
    import tempfile

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.writelines(lines)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file, not mkstemp's owner-only mode
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
