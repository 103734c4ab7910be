"""A folder of messy files goes through index, align and mask: no crash, a status for each."""

from __future__ import annotations

import json
import os
import struct
import tarfile
import zlib

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from conftest import REPO, copy_workflow, snakemake

pytestmark = pytest.mark.slow


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge image (the decompression-bomb case) without its pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def make_corpus(root, lfw_tgz) -> dict[str, str]:
    """Real faces of three people plus one bad file of each kind; returns file -> expected status."""
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
    for name in ("rgba.png", "gray16.png", "cmyk.jpg", "gray.jpg", "palette.gif", "exif_rotated.jpg", "png_named.jpg"):
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
    })
    (root / os.fsdecode(b"caf\xe9_person")).mkdir()  # a non-UTF-8 folder name
    return expected


def test_messy_folder_gets_a_status_for_every_file(tmp_path, shared_data):
    corpus = tmp_path / "corpus"
    expected = make_corpus(corpus, shared_data / "lfw-mini" / "lfw-deepfunneled-mini.tgz")
    work = copy_workflow(tmp_path / "wf")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["masks"] = {"surgical_blue": config["masks"]["surgical_blue"]}
    config["datasets"] = {"mixed": {"layout": "folder", "shards": 1, "protocols": ["all_identities"],
                                    "files": {"images": {"path": str(corpus)}}}}
    config["tables"] = {"benchmark2": {"metric": "eer", "ref_variant": "unmasked", "probe_variant": "surgical_blue"}}
    (work / "mixed.yaml").write_text(yaml.safe_dump(config))
    snakemake(work, "results/tables/coverage.csv", "results/mixed/aligned/summary.json",
              "--cores", "2", "--configfile", "mixed.yaml")

    aligned = pq.read_table(work / "results/mixed/aligned/shard-0.parquet").to_pylist()
    status = {row["image_id"]: row["status"] for row in aligned}
    for image_id, want in expected.items():
        got = status.get(image_id)
        if want == "face":
            assert got in ("ok", "fallback"), (image_id, got)
        else:
            assert got == want, (image_id, got)
        assert all(r["reason"] for r in aligned if r["status"] not in ("ok", "fallback", "provided"))
    index_report = json.loads((work / "results/mixed/index.json").read_text())
    print("bad-input corpus:", len(expected), "files; align statuses:",
          json.loads((work / "results/mixed/aligned/summary.json").read_text())["statuses"],
          "; index skipped:", index_report["skipped"])
    # the symlink loop is caught at indexing and counted there, not lost
    assert sum(index_report["skipped"].values()) >= 1
    masked = pq.read_table(work / "results/mixed/masked/surgical_blue/shard-0.parquet").to_pylist()
    assert len(masked) == len(aligned)
    for row in masked:
        usable = status[row["image_id"]] in ("ok", "fallback")
        assert row["status"] == ("masked" if usable else "not_aligned"), row["image_id"]
