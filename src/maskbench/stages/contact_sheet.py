"""A contact sheet of a dataset's real-masked photos beside its synthetic masked chips.

One column per person (people with a real-masked photo, in name order), one row for the real
masks and one per synthetic mask type: each cell is that person's first real-masked chip, or the
first of their bare photos masked with that type, so a reader judges the synthetic masks against
real ones on the same faces. A person with no usable chip of a kind leaves a blank cell.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pyarrow.parquet as pq

from maskbench.io.atomic import write_bytes
from maskbench.io.chips import decode_chip
from maskbench.io.manifests import USABLE_STATUSES

log = logging.getLogger(__name__)
REAL_ROW = "real masks"


def _rows(paths: list[str], columns: list[str]) -> list[dict]:
    out = []
    for path in paths:
        names = pq.read_schema(path).names
        out += pq.read_table(path, columns=[c for c in columns if c in names]).to_pylist()
    return out


def sheet_cells(aligned: list[str], masked: dict[str, list[str]], people: int = 8) -> dict[str, list]:
    """Row name -> chips (None where a person has none), columns the first ``people`` people
    with a usable real-masked chip. Fails, naming the shards, when there is none."""
    rows = _rows(aligned, ["image_id", "identity", "status", "chip", "real_mask"])
    usable = sorted((r for r in rows if r["status"] in USABLE_STATUSES and r["chip"] is not None),
                    key=lambda r: r["image_id"])
    real = {}
    for r in usable:
        if r.get("real_mask"):
            real.setdefault(r["identity"], r["chip"])
    if not real:
        raise ValueError(f"no aligned real-masked photo in {aligned}: nothing to set synthetic masks beside")
    chosen = sorted(real)[:people]
    bare = {}  # image_id -> identity of the bare photos of the chosen people
    for r in usable:
        if not r.get("real_mask") and r["identity"] in chosen:
            bare[r["image_id"]] = r["identity"]
    cells: dict[str, list] = {REAL_ROW: [decode_chip(real[p]) for p in chosen]}
    for name, paths in masked.items():
        first: dict[str, bytes] = {}
        for r in sorted(_rows(paths, ["image_id", "status", "chip"]), key=lambda r: r["image_id"]):
            if r["status"] == "masked" and r["chip"] is not None and r["image_id"] in bare:
                first.setdefault(bare[r["image_id"]], r["chip"])
        cells[name] = [decode_chip(first[p]) if p in first else None for p in chosen]
    return cells


def draw_sheet(cells: dict[str, list], cell: int = 96, label_w: int = 120) -> np.ndarray:
    """RGB image: a label column, then one ``cell``-px square per chip; blank where None."""
    n = max(len(v) for v in cells.values())
    sheet = np.full((cell * len(cells), label_w + cell * n, 3), 255, np.uint8)
    for r, (name, chips) in enumerate(cells.items()):
        y = r * cell
        cv2.putText(sheet, name[:18], (4, y + cell // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
        for c, chip in enumerate(chips):
            if chip is not None:
                x = label_w + c * cell
                sheet[y:y + cell, x:x + cell] = cv2.resize(chip, (cell, cell), interpolation=cv2.INTER_AREA)
    return sheet


def write_contact_sheet(aligned: list[str], masked: dict[str, list[str]], out_png: str, people: int = 8) -> dict:
    cells = sheet_cells(aligned, masked, people)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(draw_sheet(cells), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"PNG encoding of {out_png} failed")
    write_bytes(out_png, buf.tobytes())
    counts = {name: sum(c is not None for c in chips) for name, chips in cells.items()}
    log.info("contact sheet %s: %s", out_png, counts)
    return counts
