"""Regenerate docs/rulegraph.dot and docs/rulegraph.svg: the rule graph of `snakemake all` on the
default config, without the code-stamp rule every rule depends on (drawn, it hides the stages).

    python docs/rulegraph.py
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
NOT_DRAWN = {"code_stamp"}


def without(dot: str, rules: set[str]) -> str:
    """The DOT text with the nodes labelled ``rules`` and their edges removed."""
    hidden = {n for n, label in re.findall(r'^\s*(\d+)\[label = "([^"]+)"', dot, re.M) if label in rules}
    keep, edges = [], []
    for line in dot.splitlines():
        node = re.match(r"^\s*(\d+)\[label", line)
        edge = re.match(r"^\s*(\d+) -> (\d+)", line)
        if (node and node[1] in hidden) or (edge and {edge[1], edge[2]} & hidden):
            continue
        if edge:
            edges.append(line)
        else:
            if line.strip() == "}":  # Snakemake lists the edges in no fixed order: sorted, the file is stable
                keep.extend(sorted(edges, key=lambda e: tuple(int(n) for n in re.findall(r"\d+", e)[:2])))
                edges = []
            keep.append(line)
    return "\n".join(keep) + "\n"


def main() -> None:
    if shutil.which("dot") is None:
        sys.exit("docs/rulegraph.py needs Graphviz's `dot` on the PATH (e.g. `apt install graphviz`)")
    snakemake = Path(sys.executable).parent / "snakemake"
    out = subprocess.run([str(snakemake if snakemake.exists() else "snakemake"), "all", "--rulegraph", "dot",
                          "--quiet", "all"], cwd=DOCS.parent, check=True, capture_output=True, text=True).stdout
    dot = without(out[out.index("digraph"):], NOT_DRAWN)
    (DOCS / "rulegraph.dot").write_text(dot)
    svg = subprocess.run(["dot", "-Tsvg"], input=dot, check=True, capture_output=True, text=True).stdout
    (DOCS / "rulegraph.svg").write_text(svg)


if __name__ == "__main__":
    main()
