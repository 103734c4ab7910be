"""Every rule declares a conda environment, and the environments agree with the package."""

from __future__ import annotations

import re
import tomllib

import yaml
from packaging.requirements import Requirement

from conftest import REPO

# conda-forge names of packages that PyPI names differently
CONDA_TO_PYPI = {"opencv": "opencv-python-headless"}


def rule_blocks() -> dict[str, str]:
    blocks = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        for match in re.finditer(r"(?ms)^rule (\w+):\n(.*?)(?=^\S|\Z)", text):
            blocks[match[1]] = match[2]
    return blocks


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
