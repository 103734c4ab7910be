"""A folder of messy files goes through index, align and mask and through `maskbench mask`:
no crash, a status and a reason for each file, good files processed, counts printed.

Unreadable must mean unreadable: as root (here and in CI) the runs go through setpriv without the
capabilities that bypass permission bits (see unprivileged.py); the corpus is also read-only.
"""

from __future__ import annotations

import csv
import json
import os
import struct
import sys
import tarfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from conftest import REPO, copy_workflow, snakemake
from unprivileged import make_read_only, make_writable, restricted_prefix, run_restricted, snakemake_exe

pytestmark = pytest.mark.slow


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge image (the decompression-bomb case) without its pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


NON_UTF8_FOLDER = os.fsdecode(b"caf\xe9_person")
NON_UTF8_FILE = os.fsdecode(b"photo_\xff.jpg")


def make_corpus(root, lfw_tgz, unreadable: bool, non_utf8: bool) -> dict[str, str]:
    """Real faces of three people plus one bad file of each kind; returns file -> expected outcome.

    Outcomes: 'face' (usable), an alignment status, or 'index:<reason>' for entries the index skips.
    """
    from ten_faces import ten_faces

    expected = {}
    with tarfile.open(lfw_tgz) as tf:
        members = sorted((m for m in tf.getmembers() if m.isfile()), key=lambda m: m.name)
    people: dict[str, list] = {}
    for m in members:
        people.setdefault(m.name.split("/")[1], []).append(m)
    chosen = [p for p, ms in people.items() if len(ms) >= 3][:3]
    with tarfile.open(lfw_tgz) as tf:
        for person in chosen:
            (root / person).mkdir(parents=True)
            for m in people[person][:3]:
                (root / person / m.name.split("/")[-1]).write_bytes(tf.extractfile(m).read())
                expected[f"{person}/{m.name.split('/')[-1]}"] = "face"
        face = np.asarray(Image.open(tf.extractfile(people[chosen[0]][0])).convert("RGB"))
    bad = root / chosen[0]
    Image.fromarray(np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])).save(bad / "rgba.png")
    Image.fromarray((face[..., 0].astype(np.uint16) * 257)).save(bad / "gray16.png")
    Image.fromarray(face).convert("CMYK").save(bad / "cmyk.jpg")
    Image.fromarray(face).convert("L").save(bad / "gray.jpg")
    Image.fromarray(face).convert("P").save(bad / "palette.gif")
    rotated = Image.fromarray(np.ascontiguousarray(np.rot90(face)))
    exif = rotated.getexif()
    exif[0x0112] = 6  # stored turned a quarter counter-clockwise: viewers rotate it back clockwise
    rotated.save(bad / "exif_rotated.jpg", exif=exif)
    Image.fromarray(face).save(bad / "png_named.jpg", format="PNG")
    Image.fromarray(ten_faces()[0]).save(bad / "ten_faces.png")
    for name in ("rgba.png", "gray16.png", "cmyk.jpg", "gray.jpg", "palette.gif", "exif_rotated.jpg",
                 "png_named.jpg", "ten_faces.png"):
        expected[f"{chosen[0]}/{name}"] = "face"
    jpeg = (bad / people[chosen[0]][0].name.split("/")[-1]).read_bytes()
    (bad / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("this is not an image")
    Image.new("RGB", (1, 1)).save(bad / "one_pixel.png")
    (bad / "huge.png").write_bytes(png_header_only(20000, 20000))
    Image.fromarray(np.full((200, 200, 3), 120, np.uint8)).save(bad / "no_face.png")
    os.symlink("loop.jpg", bad / "loop.jpg")
    expected.update({
        f"{chosen[0]}/truncated.jpg": "unreadable", f"{chosen[0]}/empty.jpg": "unreadable",
        f"{chosen[0]}/text.jpg": "unreadable", f"{chosen[0]}/one_pixel.png": "too_small",
        f"{chosen[0]}/huge.png": "too_large", f"{chosen[0]}/no_face.png": "no_face",
        f"{chosen[0]}/loop.jpg": "index:symlink_loop",
    })
    if unreadable:
        (bad / "unreadable.jpg").write_bytes(jpeg)
        (bad / "unreadable.jpg").chmod(0)
        expected[f"{chosen[0]}/unreadable.jpg"] = "index:permission_denied"
    if non_utf8:
        (root / NON_UTF8_FOLDER).mkdir()
        (root / NON_UTF8_FOLDER / "face.jpg").write_bytes(jpeg)
        (bad / NON_UTF8_FILE).write_bytes(jpeg)
        expected[f"{NON_UTF8_FOLDER}/face.jpg"] = "index:non_utf8_name"
        expected[f"{chosen[0]}/{NON_UTF8_FILE}"] = "index:non_utf8_name"
    return expected


def corpus_config(corpus) -> dict:
    """The default config with only the corpus as a dataset, one mask type and the pretrained model."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    mask = "surgical_blue"
    pretrained = next(name for name, spec in config["models"].items() if spec["kind"] == "dlib_resnet")
    config["models"] = {pretrained: config["models"][pretrained]}
    config["masks"] = {mask: config["masks"][mask]}
    config["datasets"] = {"mixed": {"layout": "folder", "shards": 1, "protocols": [],
                                    "files": {"images": {"path": str(corpus)}}}}
    config["tables"] = {"benchmark2": {"metric": "eer", "ref_variant": "unmasked", "probe_variant": mask}}
    return config


def detector_count(path) -> int:
    """Faces dlib's HOG detector finds in an image file on its own (upsampling once, as align does)."""
    import dlib

    return len(dlib.get_frontal_face_detector()(np.asarray(Image.open(path).convert("RGB")), 1))


@pytest.fixture(scope="module")
def restriction():
    prefix, how = restricted_prefix()
    print(f"bad-input runs: {how}" if prefix is not None else f"unreadable case left out: {how}")
    return prefix


def test_messy_folder_gets_a_status_for_every_file(tmp_path, shared_data, restriction):
    corpus = tmp_path / "corpus"
    expected = make_corpus(corpus, shared_data / "lfw-mini" / "lfw-deepfunneled-mini.tgz",
                           unreadable=restriction is not None, non_utf8=True)
    work = copy_workflow(tmp_path / "wf")
    (work / "mixed.yaml").write_text(yaml.safe_dump(corpus_config(corpus)))
    targets = ["results/tables/coverage.csv", "results/mixed/aligned/summary.json"]
    make_read_only(corpus)  # a dataset used in place (`path:`) is never written to
    try:
        if restriction is not None:
            proc = run_restricted(restriction, [snakemake_exe(), *targets, "--cores", "2", "--configfile", "mixed.yaml"],
                                  work)
            assert proc.returncode == 0, proc.stdout[-6000:]
        else:
            snakemake(work, *targets, "--cores", "2", "--configfile", "mixed.yaml")
    finally:
        make_writable(corpus)

    aligned = pq.read_table(work / "results/mixed/aligned/shard-0.parquet").to_pylist()
    status = {row["image_id"]: row["status"] for row in aligned}
    index_report = json.loads((work / "results/mixed/index.json").read_text())
    for image_id, want in expected.items():
        got = status.get(image_id)
        if want == "face":
            assert got in ("ok", "fallback"), (image_id, got)
        elif want.startswith("index:"):
            assert got is None, (image_id, got)  # skipped by the index, counted there
        else:
            assert got == want, (image_id, got)
    assert set(status) <= set(expected)  # nothing unexpected slipped in
    assert all(r["reason"] for r in aligned if r["status"] not in ("ok", "fallback", "provided"))
    index_skips = Counter(w.removeprefix("index:") for w in expected.values() if w.startswith("index:"))
    assert index_report["skipped"] == dict(index_skips)
    assert len(aligned) + sum(index_report["skipped"].values()) == len(expected)  # every file accounted for

    ten = next(r for r in aligned if r["image_id"].endswith("/ten_faces.png"))
    assert ten["status"] == "ok" and ten["n_faces"] == detector_count(corpus / ten["image_id"]) == 10

    summary = json.loads((work / "results/mixed/aligned/summary.json").read_text())
    print(f"bad-input corpus: {len(expected)} files; index skipped {index_report['skipped']}; "
          f"align statuses {summary['statuses']}")
    assert summary["statuses"] == dict(sorted(Counter(status.values()).items()))
    masked = pq.read_table(work / "results/mixed/masked/surgical_blue/shard-0.parquet").to_pylist()
    assert len(masked) == len(aligned)
    for row in masked:
        usable = status[row["image_id"]] in ("ok", "fallback")
        assert row["status"] == ("masked" if usable else "not_aligned"), row["image_id"]


CLI_STATUS = {"face": "masked", "index:symlink_loop": "unreadable", "index:permission_denied": "unreadable"}


def test_mask_command_gives_every_file_a_status(tmp_path, shared_data, restriction):
    corpus = tmp_path / "corpus"
    expected = make_corpus(corpus, shared_data / "lfw-mini" / "lfw-deepfunneled-mini.tgz",
                           unreadable=restriction is not None, non_utf8=False)
    out = tmp_path / "out"
    exe = Path(sys.executable).parent / "maskbench"
    cmd = [str(exe) if exe.exists() else "maskbench",
           "mask", str(corpus), "--mask", "surgical_blue", "--all-faces", "--out", str(out)]
    make_read_only(corpus)
    try:
        proc = run_restricted(restriction if restriction is not None else [], cmd, tmp_path)
    finally:
        make_writable(corpus)
    assert proc.returncode == 0, proc.stdout[-4000:]
    with open(out / "mask_report.csv", newline="", encoding="utf-8") as f:
        rows = {os.path.relpath(r["source"], corpus): r for r in csv.DictReader(f)}
    assert set(rows) == set(expected)  # one record per file, none lost
    for name, want in expected.items():
        row = rows[name]
        assert row["status"] == CLI_STATUS.get(want, want), (name, row)
        assert row["status"] == "masked" or row["reason"], (name, row)
    if restriction is not None:
        unreadable = next(r for n, r in rows.items() if n.endswith("unreadable.jpg"))
        assert "permission denied" in unreadable["reason"]
    ten = next(r for n, r in rows.items() if n.endswith("ten_faces.png"))
    assert int(ten["faces"]) == detector_count(corpus / next(n for n in rows if n.endswith("ten_faces.png"))) == 10
    counts = Counter(r["status"] for r in rows.values())
    print(f"`maskbench mask` on the corpus: {len(rows)} files; statuses {dict(sorted(counts.items()))}")
    assert f"{len(rows)} file(s) x 1 mask type(s)" in proc.stdout


def test_mask_command_survives_non_utf8_names(tmp_path, shared_data):
    from maskbench.cli import main

    with tarfile.open(shared_data / "lfw-mini" / "lfw-deepfunneled-mini.tgz") as tf:
        jpeg = tf.extractfile(next(m for m in tf.getmembers() if m.isfile())).read()
    (tmp_path / "in" / NON_UTF8_FOLDER).mkdir(parents=True)
    (tmp_path / "in" / NON_UTF8_FOLDER / NON_UTF8_FILE).write_bytes(jpeg)
    assert main(["mask", str(tmp_path / "in"), "--mask", "surgical_blue", "--out", str(tmp_path / "out")]) == 0
    with open(tmp_path / "out" / "mask_report.csv", newline="", encoding="utf-8") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["masked"]
