"""The package's layers hold: what may import what (README, "Layout").

Static: read from the source with ``ast`` (imports inside functions count), so a lazy import can
neither hide a cycle nor smuggle torch into a layer that must not need it.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from conftest import top_level_imports

from maskbench.code_closure import PACKAGE_DIR, closure, imported_modules

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
HEAVY = {"torch", "torchvision", "cv2", "dlib", "mediapipe", "safetensors"}
# layer -> what it must never reach: evaluation and reporting work on scores, protocols on identities;
# io may decode chips (cv2) but never needs a network
FORBIDDEN = {"evaluation": HEAVY, "protocols": HEAVY, "reporting": HEAVY, "io": {"torch", "torchvision", "safetensors"}}
PURE_AT_PARSE = ("maskbench.config", "maskbench.attributes.settings", "maskbench.attributes.labels",
                 "maskbench.code_closure", "maskbench.protocols.split_spec", "maskbench.training.specs")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(PACKAGE_DIR).with_suffix("").parts
        out[".".join(("maskbench", *parts)).removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _third_party(path: Path) -> set[str]:
    return top_level_imports(path) - {"maskbench"}


def _closure_of(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(imported_modules(MODULES[m]) - seen)
    return seen


def test_no_import_cycles():
    graph = {m: {d for d in imported_modules(p) if d != m and not p.name == "__init__.py"} for m, p in MODULES.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for d in sorted(graph.get(d_ := m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d] if d in stack else [m, d])
            elif d not in state:
                visit(d, stack + [d])
        state[d_] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_only_stages_import_stages():
    leaks = [(m, d) for m, p in MODULES.items() if not m.startswith("maskbench.stages")
             for d in imported_modules(p) if d.startswith("maskbench.stages")]
    assert not leaks, f"a lower layer imports a stage module: {leaks}"


def test_stages_import_no_other_stage():
    """A stage's readers and helpers live in the layers below, so one stage never runs another's code."""
    leaks = [(m, d) for m, p in MODULES.items() if m.startswith("maskbench.stages.")
             for d in imported_modules(p) if d.startswith("maskbench.stages") and d != m]
    assert not leaks, f"a stage module imports another stage: {leaks}"


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_without_tensors_never_reach_torch_or_cv2(layer):
    bad = {}
    for m in MODULES:
        if m.startswith(f"maskbench.{layer}.") or m == f"maskbench.{layer}":
            reached = {x: FORBIDDEN[layer] & _third_party(MODULES[x]) for x in _closure_of(m)}
            reached = {x: h for x, h in reached.items() if h}
            if reached:
                bad[m] = reached
    assert not bad, f"maskbench.{layer} reaches {sorted(FORBIDDEN[layer])} through: {bad}"


@pytest.mark.parametrize("module", PURE_AT_PARSE)
def test_what_the_workflow_imports_at_parse_time_is_light(module):
    """The Snakefile imports these to build its DAG: no torch, sklearn, cv2 or scipy behind them."""
    heavy = {x: (HEAVY | {"sklearn", "scipy", "matplotlib"}) & _third_party(MODULES[x]) for x in _closure_of(module)}
    assert not {x: h for x, h in heavy.items() if h}


def test_nothing_in_the_library_imports_snakemake():
    assert not [m for m, p in MODULES.items() if "snakemake" in _third_party(p)]


def test_scripts_import_no_script_and_rules_read_their_import_closure():
    for script in SCRIPTS.glob("*.py"):
        assert not [x for x in _third_party(script) if (SCRIPTS / f"{x}.py").exists()], script
        files = closure(script)
        assert files, f"{script.name} runs no library code"
        assert all(f.is_relative_to(PACKAGE_DIR) for f in files)


def test_closure_follows_imports_inside_functions_and_stops_at_exclusions(tmp_path):
    pkg = tmp_path / "maskbench"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from maskbench.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text("import os\n")
    (pkg / "d.py").write_text("")
    script = tmp_path / "s.py"
    script.write_text("from maskbench.a import f\nimport maskbench.d\n")
    names = lambda files: sorted(str(f.relative_to(pkg)) for f in files)  # noqa: E731
    assert names(closure(script, package_dir=pkg)) == ["a.py", "d.py", "sub/b.py", "sub/c.py"]
    assert names(closure(script, ("maskbench.sub.b",), package_dir=pkg)) == ["a.py", "d.py"]


# what a script may import besides the stage layer: its log and error handling, and the standard library
SCRIPT_HELPERS = {"maskbench.logs", "maskbench.errors"}


def _script_imports(script: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module)
    return found


def test_scripts_call_only_the_stage_layer():
    """A rule's script calls one stage (maskbench.stages.*), never a lower layer, and no third-party code."""
    bad = {}
    for script in sorted(SCRIPTS.glob("*.py")):
        imports = _script_imports(script)
        wrong = sorted(m for m in imports if not m.startswith("maskbench.stages.") and m not in SCRIPT_HELPERS
                       and m.split(".")[0] not in {"pathlib", "json", "sys", "os"})
        if wrong or not any(m.startswith("maskbench.stages.") for m in imports):
            bad[script.name] = wrong or "no stage"
    assert not bad, f"scripts reaching past the stage layer: {bad}"


def test_code_stamp_records_each_file_hash_and_changes_only_with_content(tmp_path):
    """A rule's one code input: rewritten with another content exactly when a library file's
    content changes, so Snakemake (which compares input checksums) re-runs its stages then only."""
    import hashlib
    import os

    from maskbench.code_closure import code_stamp

    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("x = 1\n")
    b.write_text("y = 2\n")
    out = tmp_path / "stamps" / "s.sha256"
    code_stamp([str(b), str(a)], str(out))
    first = out.read_text()
    assert first.splitlines() == [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p}" for p in (a, b)]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask and not list(out.parent.glob(".*"))  # no temp left
    code_stamp([str(a), str(b)], str(out))
    assert out.read_text() == first
    b.write_text("y = 3\n")
    code_stamp([str(a), str(b)], str(out))
    assert out.read_text() != first and out.read_text().splitlines()[0] == first.splitlines()[0]


def test_refreshing_a_code_stamp_leaves_it_untouched_unless_the_code_changed(tmp_path):
    """The workflow refreshes every stamp as it is read: an unchanged stamp keeps its bytes and its
    mtime (nothing re-runs); a changed one names exactly the files whose content changed."""
    import os

    from maskbench.code_closure import refresh_stamp

    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("x = 1\n")
    b.write_text("y = 2\n")
    out = tmp_path / "s.sha256"
    assert refresh_stamp([str(a), str(b)], str(out)) == sorted([str(a), str(b)])  # new: every file
    os.utime(out, (1_000_000, 1_000_000))
    before = out.read_bytes()
    a.touch()
    assert refresh_stamp([str(b), str(a)], str(out)) is None
    assert out.read_bytes() == before and out.stat().st_mtime == 1_000_000
    b.write_text("y = 3\n")
    assert refresh_stamp([str(a), str(b)], str(out)) == [str(b)]
    assert out.read_bytes() != before and out.stat().st_mtime > 1_000_000
    c = tmp_path / "c.py"
    c.write_text("z = 0\n")
    assert refresh_stamp([str(a), str(c)], str(out)) == sorted([str(b), str(c)])  # one left, one joined


def test_a_stamp_names_files_from_the_checkout_so_a_moved_or_symlinked_one_changes_nothing(tmp_path):
    """Checkouts of the same code anywhere, or reached through a symlink, give stamps of the same
    bytes; a file outside the checkout keeps the path it was given."""
    from maskbench.code_closure import code_stamp, refresh_stamp, stamp_label

    stamps = []
    for where in ("first", "deeper/second", "link"):
        root = tmp_path / where
        (root / "workflow").mkdir(parents=True)
        (root / "workflow" / "s.py").write_text("y = 2\n")
        if where == "link":  # the package a symlink to another folder
            (root / "src").mkdir()
            (root / "src" / "maskbench").symlink_to(tmp_path / "first" / "src" / "maskbench", target_is_directory=True)
        else:
            (root / "src" / "maskbench" / "io").mkdir(parents=True)
            (root / "src" / "maskbench" / "io" / "atomic.py").write_text("x = 1\n")
        files = [os.path.relpath(root / "workflow" / "s.py"), str(root / "src" / "maskbench" / "io" / "atomic.py")]
        out = tmp_path / f"{where.replace('/', '_')}.sha256"
        code_stamp(files, str(out), root=root)
        stamps.append(out.read_text())
        assert stamp_label(files[0], root) == "workflow/s.py"
        assert refresh_stamp(files, str(out), root=root) is None
    assert stamps[0] == stamps[1] == stamps[2]
    assert [line.split("  ")[1] for line in stamps[0].splitlines()] == ["src/maskbench/io/atomic.py", "workflow/s.py"]
    assert stamp_label(str(tmp_path / "other.py"), tmp_path / "first") == str(tmp_path / "other.py")


# The stages whose re-run costs most, or re-runs what costs most (a split re-run trains every model
# on it again), with the library code each may run: an edit anywhere else must not re-run them.
COSTLY_STAGE_CODE = {
    "align": ("faces/", "io/", "stages/align.py"),
    "mask": ("faces/", "io/", "stages/mask.py"),
    "embed": ("models/", "io/", "stages/embed.py", "training/specs.py", "training/selection.py"),  # fine-tuned nets
    "split": ("io/", "protocols/split", "attributes/labels.py", "stages/split.py"),
}
ANY_STAGE = ("errors.py", "logs.py", "seeds.py", "variants.py", "__init__.py", "stages/rule_inputs.py")


@pytest.mark.parametrize("script", sorted(COSTLY_STAGE_CODE))
def test_costly_stages_run_only_their_own_code(script):
    """The split stage lived in the attribute study's module: its code was config.py and every
    attribute file, so an edit of a table re-ran the splits and then every training job."""
    repo = PACKAGE_DIR.parents[1]
    files = [Path(f).resolve().relative_to(PACKAGE_DIR).as_posix()
             for f in closure(repo / "workflow" / "scripts" / f"{script}.py", (), PACKAGE_DIR)]
    allowed = COSTLY_STAGE_CODE[script] + ANY_STAGE
    assert files and not [f for f in files if not f.startswith(allowed)], files
