"""The rule graph kept in docs/ matches the workflow's current rules and dependencies."""

from __future__ import annotations

import re

from conftest import REPO, copy_workflow, snakemake


def graph_edges(dot: str) -> tuple[set[str], set[tuple[str, str]]]:
    """(rule names, dependency edges by name) of a snakemake rule graph in DOT."""
    labels = dict(re.findall(r'^\s*(\d+)\[label = "([^"]+)"', dot, re.M))
    edges = {(labels[a], labels[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M)}
    return set(labels.values()), edges


def test_committed_rule_graph_matches_the_workflow(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    current = snakemake(work, "all", "--rulegraph", "dot", "--quiet", "all").stdout
    current = current[current.index("digraph"):]
    committed = (REPO / "docs" / "rulegraph.dot").read_text()
    assert graph_edges(current) == graph_edges(committed), (
        "docs/rulegraph.dot is stale: regenerate it with "
        "`python docs/rulegraph.py` (the rule graph, as DOT and SVG)"
    )
    svg = (REPO / "docs" / "rulegraph.svg").read_text()
    rules, _ = graph_edges(committed)
    assert {r for r in rules if f">{r}</text>" in svg} == rules, "docs/rulegraph.svg is stale"
