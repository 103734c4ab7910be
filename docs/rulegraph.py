"""Regenerate docs/rulegraph.dot and docs/rulegraph.svg: the rule graph of `snakemake all` on the
default config.

    python docs/rulegraph.py
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent


def with_sorted_edges(dot: str) -> str:
    """The DOT text with its edges sorted: Snakemake lists them in no fixed order."""
    keep, edges = [], []
    for line in dot.splitlines():
        if re.match(r"^\s*(\d+) -> (\d+)", line):
            edges.append(line)
            continue
        if line.strip() == "}":
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
    dot = with_sorted_edges(out[out.index("digraph"):])
    (DOCS / "rulegraph.dot").write_text(dot)
    svg = subprocess.run(["dot", "-Tsvg"], input=dot, check=True, capture_output=True, text=True).stdout
    (DOCS / "rulegraph.svg").write_text(svg)


if __name__ == "__main__":
    main()
