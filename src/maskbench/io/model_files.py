"""Locate dlib's model files shipped by the ``face-recognition-models`` package.

The package's own ``__init__`` imports ``pkg_resources`` (gone from current setuptools), so we
find its folder with ``importlib.util.find_spec`` and never import it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_FILES = {
    "shape_predictor_68": "shape_predictor_68_face_landmarks.dat",
    "shape_predictor_5": "shape_predictor_5_face_landmarks.dat",
    "face_recognition_resnet": "dlib_face_recognition_resnet_model_v1.dat",
    "cnn_face_detector": "mmod_human_face_detector.dat",
}


def model_path(name: str) -> Path:
    """Path of one of dlib's model files by short name (see ``_FILES``)."""
    if name not in _FILES:
        raise KeyError(f"unknown dlib model {name!r}; known: {sorted(_FILES)}")
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the 'face-recognition-models' package is not installed: pip install face-recognition-models"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / _FILES[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall face-recognition-models")
    return path
