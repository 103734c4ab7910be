"""Index: every layout on a miniature tree through acquire + index, bad entries, and real fixtures."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from maskbench.data.acquire import acquire_dataset
from maskbench.data.index import mfr2_mask_types
from maskbench.data.index import LAYOUTS, IndexLayoutError, build_index, evenly_spaced, parse_utkface_name, write_index
from maskbench.io.manifests import INDEX_SCHEMA, shard_of

ATTRS = ("identity", "age", "sex", "race", "pose", "real_mask")


def write_tree(root: Path, names: list[str]) -> Path:
    """Tiny stand-in files: the index never opens images, so any bytes will do."""
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"not really an image: " + name.encode())
    return root


def make_archive(path: Path, names: list[str]) -> Path:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name in names:
                zf.writestr(name, b"img")
    else:
        with tarfile.open(path, "w:gz") as tf:
            for name in names:
                info = tarfile.TarInfo(name)
                info.size = 3
                tf.addfile(info, io.BytesIO(b"img"))
    return path


def acquire_and_index(tmp_path: Path, layout: str, names: list[str], archive: str = "data.tgz",
                      options: dict | None = None, n_shards: int = 3):
    """The real path: an archive acquired (verified, extracted), then indexed."""
    src = make_archive(tmp_path / archive, names)
    manifest = acquire_dataset(layout, {"images": {"path": str(src)}}, tmp_path / "raw" / layout)
    return build_index(layout, Path(manifest["images"]["path"]), n_shards, options)


def rows(table) -> list[tuple]:
    """(image_id, source_path, {non-null attributes}) per row, in table order."""
    out = []
    for r in table.to_pylist():
        attrs = {k: r[k] for k in ATTRS if r[k] is not None}
        out.append((r["image_id"], r["source_path"], attrs))
    return out


def same_path(*image_ids: str) -> list[tuple[str, str]]:
    return [(i, i) for i in image_ids]


# ----------------------------------------------------------------------------------------------
# layouts


def test_lfw(tmp_path):
    names = [
        "lfw-deepfunneled/Ann_Lee/Ann_Lee_0001.jpg",
        "lfw-deepfunneled/Ann_Lee/Ann_Lee_0002.jpg",
        "lfw-deepfunneled/Bob/Bob_0001.jpg",
        "lfw-deepfunneled/Bob/Carl_0001.jpg",
        "lfw-deepfunneled/Bob/notes.txt",
        "lfw-deepfunneled/Bob/.DS_Store",
        "lfw-deepfunneled/stray.jpg",
    ]
    table, report = acquire_and_index(tmp_path, "lfw", names)
    assert rows(table) == [
        ("Ann_Lee/Ann_Lee_0001.jpg", "lfw-deepfunneled/Ann_Lee/Ann_Lee_0001.jpg", {"identity": "Ann_Lee"}),
        ("Ann_Lee/Ann_Lee_0002.jpg", "lfw-deepfunneled/Ann_Lee/Ann_Lee_0002.jpg", {"identity": "Ann_Lee"}),
        ("Bob/Bob_0001.jpg", "lfw-deepfunneled/Bob/Bob_0001.jpg", {"identity": "Bob"}),
    ]
    assert report == {
        "identities": 2,
        "images": 3,
        "skipped": {"malformed_name": 1, "no_identity_folder": 1, "not_an_image_extension": 1},
        "skipped_examples": {
            "malformed_name": ["lfw-deepfunneled/Bob/Carl_0001.jpg"],
            "no_identity_folder": ["lfw-deepfunneled/stray.jpg"],
            "not_an_image_extension": ["lfw-deepfunneled/Bob/notes.txt"],
        },
    }


def test_lfw_ids_do_not_depend_on_how_the_data_was_supplied(tmp_path):
    names = ["Ann/Ann_0001.jpg", "Bob/Bob_0001.jpg"]
    from_archive, _ = acquire_and_index(tmp_path, "lfw", [f"lfw/{n}" for n in names])
    local = write_tree(tmp_path / "local", names)
    from_folder, _ = build_index("lfw", local, 3)
    assert from_archive["image_id"].to_pylist() == from_folder["image_id"].to_pylist() == names
    assert from_folder["source_path"].to_pylist() == names
    assert from_archive["shard"].to_pylist() == from_folder["shard"].to_pylist()


def test_folder(tmp_path):
    names = ["Ann/a.jpg", "Ann/sub/b.PNG", "Bob/c.jpeg", "Bob/d.TIFF", "loose.jpg", "Bob/readme.md"]
    table, report = acquire_and_index(tmp_path, "folder", names, archive="data.zip")
    assert rows(table) == [
        ("Ann/a.jpg", "Ann/a.jpg", {"identity": "Ann"}),
        ("Ann/sub/b.PNG", "Ann/sub/b.PNG", {"identity": "Ann"}),
        ("Bob/c.jpeg", "Bob/c.jpeg", {"identity": "Bob"}),
        ("Bob/d.TIFF", "Bob/d.TIFF", {"identity": "Bob"}),
    ]
    assert report["skipped"] == {"no_identity_folder": 1, "not_an_image_extension": 1}
    assert report["identities"] == 2


def test_folder_archive_with_one_wrapper_folder_is_refused_with_the_subdir_to_set(tmp_path):
    names = ["inhouse/Ann/a.jpg", "inhouse/Bob/b.jpg", "inhouse/Cat/c.jpg"]
    with pytest.raises(IndexLayoutError, match=r"every image would be of one person, 'inhouse'.*subdir: inhouse"):
        build_index("folder", write_tree(tmp_path / "d", names), 1)
    table, report = build_index("folder", tmp_path / "d", 1, {"subdir": "inhouse"})
    assert report["identities"] == 3 and sorted(set(table["identity"].to_pylist())) == ["Ann", "Bob", "Cat"]
    # as zipped by macOS's Finder: the wrapper and __MACOSX/ beside it
    with pytest.raises(IndexLayoutError, match="subdir: inhouse"):
        build_index("folder", write_tree(tmp_path / "mac", [*names, "__MACOSX/inhouse/._a.jpg"]), 1)


def test_demo(tmp_path):
    root = write_tree(tmp_path / "images", ["id000/0.png", "id000/1.png", "id001/0.png", "landmarks.csv"])
    table, report = build_index("demo", root, 2)
    assert rows(table) == [
        ("id000/0.png", "id000/0.png", {"identity": "id000"}),
        ("id000/1.png", "id000/1.png", {"identity": "id000"}),
        ("id001/0.png", "id001/0.png", {"identity": "id001"}),
    ]
    assert report["skipped"] == {"not_an_image_extension": 1}


def test_utkface(tmp_path):
    names = [
        "UTKFace/25_0_2_20170116174525125.jpg.chip.jpg",
        "UTKFace/30_1_4_20170117.jpg",
        "UTKFace/39_1_20170116174525125.jpg.chip.jpg",  # no race field
        "UTKFace/20_2_0_20170116174525125.jpg.chip.jpg",  # sex out of range
        "UTKFace/20_0_5_20170116174525125.jpg.chip.jpg",  # race out of range
        "UTKFace/face.png",
    ]
    table, report = acquire_and_index(tmp_path, "utkface", names)
    assert rows(table) == [
        ("25_0_2_20170116174525125.jpg.chip.jpg", "UTKFace/25_0_2_20170116174525125.jpg.chip.jpg",
         {"age": 25, "sex": "male", "race": "asian"}),
        ("30_1_4_20170117.jpg", "UTKFace/30_1_4_20170117.jpg", {"age": 30, "sex": "female", "race": "others"}),
    ]
    assert report["identities"] == 0
    assert report["skipped"] == {"malformed_name": 4}
    assert report["skipped_examples"]["malformed_name"][0] == "UTKFace/20_0_5_20170116174525125.jpg.chip.jpg"


def test_celeba(tmp_path):
    root = write_tree(tmp_path / "celeba", ["img_align_celeba_png/000001.png", "img_align_celeba_png/000002.png",
                                            "img_align_celeba_png/000004.png"])
    (root / "identity_CelebA.txt").write_text("000001.jpg 2880\n000002.jpg 2937\n000003.jpg 8692\n")
    table, report = build_index("celeba", root, 4)
    assert rows(table) == [
        ("000001.png", "img_align_celeba_png/000001.png", {"identity": "2880"}),
        ("000002.png", "img_align_celeba_png/000002.png", {"identity": "2937"}),
    ]
    assert report["skipped"] == {"missing_image": 1, "no_identity": 1}
    assert report["skipped_examples"] == {"missing_image": ["000003.jpg"],
                                          "no_identity": ["img_align_celeba_png/000004.png"]}


def test_celeba_identity_file_option_through_acquire(tmp_path):
    ids = tmp_path / "identity_CelebA.txt"
    ids.write_text("000001.jpg 7\n")
    table, _ = acquire_and_index(tmp_path, "celeba", ["images/000001.jpg"], archive="celeba.zip",
                                 options={"identity_file": str(ids)})
    assert rows(table) == [("000001.jpg", "images/000001.jpg", {"identity": "7"})]


def test_celeba_without_identity_file_says_what_to_set(tmp_path):
    root = write_tree(tmp_path / "celeba", ["images/000001.png"])
    with pytest.raises(IndexLayoutError, match="identity_file"):
        build_index("celeba", root, 1)


CELEBA_ATTR_NAMES = "5_o_Clock_Shadow Arched_Eyebrows Male Young"


def celeba_with_attributes(tmp_path: Path, attribute_text: str, name: str = "list_attr_celeba.txt") -> Path:
    root = write_tree(tmp_path / "celeba", [f"img_align_celeba_png/00000{i}.png" for i in (1, 2, 3)])
    (root / "identity_CelebA.txt").write_text("000001.jpg 7\n000002.jpg 7\n000003.jpg 9\n")
    (root / "Anno").mkdir()
    (root / "Anno" / name).write_text(attribute_text)
    return root


def test_celeba_sex_from_the_male_column_of_list_attr_celeba(tmp_path):
    """1 -> male, -1 -> female (the values UTKFace's 0 and 1 give); an image the file does not
    list has no sex. The file is found beside the images, or named by attribute_file."""
    text = f"2\n{CELEBA_ATTR_NAMES}\n000001.jpg -1  1  1 -1\n000002.jpg  1 -1 -1  1\n"
    root = celeba_with_attributes(tmp_path, text)
    expected = [
        ("000001.png", "img_align_celeba_png/000001.png", {"identity": "7", "sex": "male"}),
        ("000002.png", "img_align_celeba_png/000002.png", {"identity": "7", "sex": "female"}),
        ("000003.png", "img_align_celeba_png/000003.png", {"identity": "9"}),
    ]
    assert rows(build_index("celeba", root, 2)[0]) == expected
    assert rows(build_index("celeba", root, 2, {"attribute_file": "Anno/list_attr_celeba.txt"})[0]) == expected
    utk = parse_utkface_name("30_0_1_2017.jpg")["sex"], parse_utkface_name("30_1_1_2017.jpg")["sex"]
    assert utk == ("male", "female")


def test_celeba_attributes_as_the_comma_separated_copy(tmp_path):
    text = f"image_id,{CELEBA_ATTR_NAMES.replace(' ', ',')}\n000001.jpg,-1,1,-1,-1\n000003.jpg,1,1,1,1\n"
    root = celeba_with_attributes(tmp_path, text, "list_attr_celeba.csv")
    table, _ = build_index("celeba", root, 1, {"attribute_file": "Anno/list_attr_celeba.csv"})
    assert [r["sex"] for r in table.to_pylist()] == ["female", None, "male"]


@pytest.mark.parametrize("text, options, message", [
    ("", {"attribute_file": "Anno/absent.txt"}, r"attribute file .*absent\.txt not found; set options\.attribute_file"),
    ("1\nSmiling Young\n000001.jpg 1 1\n", {}, r"no `Male` column"),
    (f"1\n{CELEBA_ATTR_NAMES}\n000001.jpg 1 1 0 1\n", {}, r"list_attr_celeba\.txt:3: expected '<image>' and 4 values"),
])
def test_bad_celeba_attribute_file_is_named(tmp_path, text, options, message):
    root = celeba_with_attributes(tmp_path, text)
    with pytest.raises(IndexLayoutError, match=message):
        build_index("celeba", root, 1, options)


def test_fei_face_original(tmp_path):
    names = ["part1/1-01.jpg", "part1/1-14.jpg", "part2/200-05.jpg", "part2/201-01.jpg", "part2/2-15.jpg"]
    table, report = acquire_and_index(tmp_path, "fei_face_original", names, archive="fei.zip")
    assert rows(table) == [
        ("part1/1-01.jpg", "part1/1-01.jpg", {"identity": "1", "pose": "01"}),
        ("part1/1-14.jpg", "part1/1-14.jpg", {"identity": "1", "pose": "14"}),
        ("part2/200-05.jpg", "part2/200-05.jpg", {"identity": "200", "pose": "05"}),
    ]
    assert report["skipped"] == {"malformed_name": 2}


def test_fei_face_frontal(tmp_path):
    names = ["frontal/1a.jpg", "frontal/1b.jpg", "frontal/12a.jpg", "frontal/12c.jpg"]
    table, report = acquire_and_index(tmp_path, "fei_face_frontal", names, archive="frontal.zip")
    assert rows(table) == [
        ("frontal/12a.jpg", "frontal/12a.jpg", {"identity": "12", "pose": "a"}),
        ("frontal/1a.jpg", "frontal/1a.jpg", {"identity": "1", "pose": "a"}),
        ("frontal/1b.jpg", "frontal/1b.jpg", {"identity": "1", "pose": "b"}),
    ]
    assert report["skipped"] == {"malformed_name": 1}


def test_georgia_tech(tmp_path):
    names = ["gt_db/s01/01.jpg", "gt_db/s01/02.jpg", "gt_db/s50/15.jpg", "gt_db/other/01.jpg", "gt_db/x.jpg"]
    table, report = acquire_and_index(tmp_path, "georgia_tech", names, archive="gt_db.zip")
    assert rows(table) == [
        ("s01/01.jpg", "gt_db/s01/01.jpg", {"identity": "s01"}),
        ("s01/02.jpg", "gt_db/s01/02.jpg", {"identity": "s01"}),
        ("s50/15.jpg", "gt_db/s50/15.jpg", {"identity": "s50"}),
    ]
    assert report["skipped"] == {"malformed_name": 1, "no_identity_folder": 1}


def test_sof_original(tmp_path):
    names = ["sof/0001_00000001_a.jpg", "sof/0001_00000002_b.jpg", "sof/0093_00000001_c.jpg", "sof/noseparator.jpg"]
    table, report = acquire_and_index(tmp_path, "sof_original", names)
    assert [(i, a) for i, _, a in rows(table)] == [
        ("sof/0001_00000001_a.jpg", {"identity": "0001"}),
        ("sof/0001_00000002_b.jpg", {"identity": "0001"}),
        ("sof/0093_00000001_c.jpg", {"identity": "0093"}),
    ]
    assert report["identities"] == 2
    assert report["skipped"] == {"malformed_name": 1}


def test_youtube_faces_samples_evenly_and_deterministically(tmp_path):
    frames = [f"frame_images_DB/Ann/0/0.{i}.jpg" for i in range(1, 11)]
    names = frames + [f"frame_images_DB/Ann/1/1.{i}.jpg" for i in (1, 2, 3)] + [
        "frame_images_DB/Ann.labeled_faces.txt", "frame_images_DB/Ann/0.jpg",
    ]
    table, report = acquire_and_index(tmp_path, "youtube_faces", names,
                                      options={"frames_per_video": 3, "seed": 1})
    # 10 frames in natural order, 3 kept at the centres of thirds: indices 1, 5, 8
    assert [i for i, _, _ in rows(table)] == [
        "Ann/0/0.2.jpg", "Ann/0/0.6.jpg", "Ann/0/0.9.jpg", "Ann/1/1.1.jpg", "Ann/1/1.2.jpg", "Ann/1/1.3.jpg",
    ]
    assert set(table["identity"].to_pylist()) == {"Ann"}
    assert table["source_path"][0].as_py() == "frame_images_DB/Ann/0/0.2.jpg"
    assert table["group"].to_pylist() == ["Ann/0"] * 3 + ["Ann/1"] * 3  # the video: no genuine pair within
    assert report["skipped"] == {"not_an_image_extension": 1, "not_sampled": 7, "unexpected_depth": 1}
    again, _ = build_index("youtube_faces", tmp_path / "raw" / "youtube_faces" / "images", 3,
                           {"frames_per_video": 3, "seed": 99})
    assert again.equals(table)


def test_youtube_faces_rejects_bad_frame_count(tmp_path):
    root = write_tree(tmp_path / "yt", ["Ann/0/0.1.jpg"])
    with pytest.raises(IndexLayoutError, match="frames_per_video"):
        build_index("youtube_faces", root, 1, {"frames_per_video": 0})


def test_real_masked(tmp_path):
    names = ["mfr2/Ann/masked/1.jpg", "mfr2/Ann/unmasked/2.jpg", "mfr2/Ann/3.jpg",
             "mfr2/Bob/face_mask/1.jpg", "mfr2/Bob/unmasked/1.jpg"]
    table, report = acquire_and_index(tmp_path, "real_masked", names,
                                      options={"subdir": "mfr2", "masked_dir": "face_mask"})
    assert rows(table) == [
        ("Ann/unmasked/2.jpg", "mfr2/Ann/unmasked/2.jpg", {"identity": "Ann", "real_mask": False}),
        ("Bob/face_mask/1.jpg", "mfr2/Bob/face_mask/1.jpg", {"identity": "Bob", "real_mask": True}),
        ("Bob/unmasked/1.jpg", "mfr2/Bob/unmasked/1.jpg", {"identity": "Bob", "real_mask": False}),
    ]
    assert report["skipped"] == {"not_in_mask_folder": 2}


def test_mfr2_reads_mask_types_from_its_labels(tmp_path):
    names = ["mfr2/Ann_Lee/Ann_Lee_0001.png", "mfr2/Ann_Lee/Ann_Lee_0002.png", "mfr2/Ann_Lee/Ann_Lee_0003.png",
             "mfr2/Bo/Bo_0001.png", "mfr2/Bo/notes.png"]
    root = write_tree(tmp_path / "raw", names)
    (root / "mfr2" / "mfr2_labels.txt").write_text("Ann_Lee, 1, no-mask\nAnn_Lee, 2, surgical_blue\nBo, 1, cloth\n")
    table, report = build_index("mfr2", root, 1)
    assert rows(table) == [
        ("Ann_Lee/Ann_Lee_0001.png", "mfr2/Ann_Lee/Ann_Lee_0001.png", {"identity": "Ann_Lee", "real_mask": False}),
        ("Ann_Lee/Ann_Lee_0002.png", "mfr2/Ann_Lee/Ann_Lee_0002.png", {"identity": "Ann_Lee", "real_mask": True}),
        ("Bo/Bo_0001.png", "mfr2/Bo/Bo_0001.png", {"identity": "Bo", "real_mask": True}),
    ]
    assert report["skipped"] == {"malformed_name": 1, "not_in_labels": 1, "not_an_image_extension": 1}  # the labels
    assert mfr2_mask_types(root) == {"Ann_Lee/Ann_Lee_0002.png": "surgical_blue", "Bo/Bo_0001.png": "cloth"}
    (root / "mfr2" / "mfr2_labels.txt").write_text("Ann_Lee 1 no-mask\n")
    with pytest.raises(IndexLayoutError, match="mfr2_labels.txt"):
        build_index("mfr2", root, 1)


def test_rmfrd_and_rof_folders_give_real_mask(tmp_path):
    rmfrd = write_tree(tmp_path / "rmfrd", ["RMFRD/AFDB_face_dataset/wang/0_0_1.jpg",
                                            "RMFRD/AFDB_masked_face_dataset/wang/0_0_0.jpg",
                                            "RMFRD/readme.jpg"])
    table, report = build_index("rmfrd", rmfrd, 1)
    assert [(r[0], r[2]) for r in rows(table)] == [
        ("AFDB_face_dataset/wang/0_0_1.jpg", {"identity": "wang", "real_mask": False}),
        ("AFDB_masked_face_dataset/wang/0_0_0.jpg", {"identity": "wang", "real_mask": True})]
    assert report["skipped"] == {"not_in_mask_folder": 1}
    rof = write_tree(tmp_path / "rof", ["neutral/ann/1.jpg", "masked/ann_wearing_mask/1.jpg",
                                        "sunglasses/ann_wearing_sunglasses/1.jpg", "masked/bob/1.jpg"])
    table, report = build_index("rof", rof, 1)
    assert [(r[0], r[2]) for r in rows(table)] == [
        ("masked/ann_wearing_mask/1.jpg", {"identity": "ann", "real_mask": True}),
        ("neutral/ann/1.jpg", {"identity": "ann", "real_mask": False})]
    assert report["skipped"] == {"malformed_name": 1, "not_in_mask_folder": 1}


def test_every_layout_is_tested():
    tested = {"lfw", "folder", "demo", "utkface", "celeba", "fei_face_original", "fei_face_frontal",
              "georgia_tech", "sof_original", "youtube_faces", "real_masked", "mfr2", "rmfrd", "rof"}
    assert set(LAYOUTS) == tested


def test_a_user_layout_can_be_registered(tmp_path, monkeypatch):
    def flat(root, options, skips):
        for p in sorted(root.iterdir()):
            yield {"image_id": p.name, "source_path": p.name, "identity": p.stem[0]}

    monkeypatch.setitem(LAYOUTS, "flat", flat)
    table, report = build_index("flat", write_tree(tmp_path / "d", ["a1.jpg", "b1.jpg"]), 2)
    assert table["identity"].to_pylist() == ["a", "b"]
    assert report["identities"] == 2


# ----------------------------------------------------------------------------------------------
# table, report, errors


def test_table_schema_order_and_shards(tmp_path):
    names = [f"p{i % 7}/img{i}.jpg" for i in range(50)]
    table, _ = build_index("folder", write_tree(tmp_path / "d", names), 5)
    assert table.schema.equals(INDEX_SCHEMA)
    ids = table["image_id"].to_pylist()
    assert ids == sorted(names)
    assert table["shard"].to_pylist() == [shard_of(i, 5) for i in ids]
    assert set(table["shard"].to_pylist()) <= set(range(5))


def test_write_index_round_trip(tmp_path):
    table, report = build_index("folder", write_tree(tmp_path / "d", ["a/1.jpg", "b/2.jpg"]), 2)
    write_index(table, report, tmp_path / "out" / "index.parquet", tmp_path / "out" / "index.json")
    assert pq.read_table(tmp_path / "out" / "index.parquet").equals(table)
    assert json.loads((tmp_path / "out" / "index.json").read_text()) == report
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["index.json", "index.parquet"]


def test_unknown_layout_and_missing_root(tmp_path):
    with pytest.raises(IndexLayoutError, match="known:"):
        build_index("nope", tmp_path, 1)
    with pytest.raises(FileNotFoundError, match="acquire"):
        build_index("folder", tmp_path / "missing", 1)
    with pytest.raises(IndexLayoutError, match="subdir"):
        build_index("folder", tmp_path, 1, {"subdir": "missing"})


# ----------------------------------------------------------------------------------------------
# entries that must not crash the index


def test_bad_entries_are_skipped_and_counted(tmp_path):
    root = write_tree(tmp_path / "d", ["Ann/1.jpg", "Ann/.hidden.jpg", ".git/x.jpg"])
    (root / "Ann" / "broken.jpg").symlink_to(root / "nowhere.jpg")
    (root / "Ann" / "self.jpg").symlink_to(root / "Ann" / "self.jpg")  # ELOOP
    (root / "Ann" / "again").symlink_to(root)  # folder loop
    (root / "Ann" / "alias.jpg").symlink_to(root / "Ann" / "1.jpg")  # fine: followed
    os.mkfifo(root / "Ann" / "pipe.jpg")
    open(os.path.join(os.fsencode(root / "Ann"), b"caf\xe9.jpg"), "wb").close()
    os.mkdir(os.path.join(os.fsencode(root), b"B\xf6b"))
    table, report = build_index("folder", root, 1)
    assert table["image_id"].to_pylist() == ["Ann/1.jpg", "Ann/alias.jpg"]
    assert report["skipped"] == {
        "broken_symlink": 1, "non_utf8_name": 2, "not_a_regular_file": 1, "symlink_loop": 2,
    }
    assert sorted(report["skipped_examples"]["non_utf8_name"]) == ["Ann/caf\\xe9.jpg", "B\\xf6b"]
    json.dumps(report)  # storable as JSON even with undecodable names


def test_permission_denied_is_skipped(tmp_path, monkeypatch):
    root = write_tree(tmp_path / "d", ["Ann/1.jpg", "Ann/2.jpg", "Bob/1.jpg"])
    real_access, real_scandir = os.access, os.scandir

    def access(path, mode, *a, **k):
        return False if str(path).endswith("2.jpg") else real_access(path, mode, *a, **k)

    def scandir(path="."):
        if str(path).endswith("Bob"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(os, "scandir", scandir)
    table, report = build_index("folder", root, 1)
    assert table["image_id"].to_pylist() == ["Ann/1.jpg"]
    assert report["skipped"] == {"permission_denied": 2}
    assert report["skipped_examples"]["permission_denied"] == ["Ann/2.jpg", "Bob/"]


@given(n=st.integers(0, 500), k=st.integers(1, 50))
def test_evenly_spaced(n, k):
    idx = evenly_spaced(n, k)
    assert len(idx) == min(n, k)
    assert idx == sorted(set(idx))
    assert all(0 <= i < n for i in idx)


# ----------------------------------------------------------------------------------------------
# real fixtures


def fixture_or_skip(shared_data: Path, relative: str) -> Path:
    """A file of the real-face fixtures (the conftest fixture skips if the folder is absent)."""
    path = shared_data / relative
    if not path.is_file():
        pytest.skip(f"real fixture {path} not found in the shared data folder")
    return path


@pytest.mark.realdata
def test_real_lfw_mini(tmp_path, shared_data):
    archive = fixture_or_skip(shared_data, "lfw-mini/lfw-deepfunneled-mini.tgz")
    sha = "5bdb8e9a87fabee45d1373a15f79c9e2fa235968228b7c01a80f32dba2e4bcad"
    manifest = acquire_dataset("lfw", {"images": {"path": str(archive), "sha256": sha}}, tmp_path / "raw")
    table, report = build_index("lfw", Path(manifest["images"]["path"]), 4)
    assert (report["identities"], report["images"], report["skipped"]) == (220, 602, {})
    assert table["source_path"][0].as_py().startswith("lfw-deepfunneled/")


@pytest.mark.realdata
def test_real_utkface_mini(tmp_path, shared_data):
    archive = fixture_or_skip(shared_data, "utkface-mini/UTKFace-mini.tar.gz")
    sha = "ff1f6fffe85747050bbe0902a0e1f2f2117ffa1b2cbf9f73a7e39a410bd26c9b"
    manifest = acquire_dataset("utkface", {"images": {"url": archive.as_uri(), "sha256": sha}}, tmp_path / "raw")
    table, report = build_index("utkface", Path(manifest["images"]["path"]), 4)
    assert report["images"] == 1200 and report["skipped"] == {}
    for column in ("age", "sex", "race"):
        assert table[column].null_count == 0
    assert set(table["sex"].to_pylist()) == {"male", "female"}
    assert set(table["race"].to_pylist()) == {"white", "black", "asian", "indian", "others"}
