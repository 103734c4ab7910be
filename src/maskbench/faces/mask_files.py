"""Masking image files directly (the ``maskbench mask`` command): any size, one or all faces.

Unlike the workflow, which paints onto aligned chips, this paints onto the original image at the
face's own landmarks, so the output keeps the input's framing and resolution.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from maskbench.io.atomic import atomic_path
from maskbench.io.images import read_rgb
from maskbench.seeds import item_seed

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
                  ".ppm"}


@dataclass(frozen=True)
class MaskedFile:
    source: str
    mask: str
    status: str  # masked | no_face | unreadable | too_small | too_large | error | skipped (not an image name)
    faces: int
    output: str | None
    reason: str | None


def iter_images(path: Path, skip: Iterable[Path] = (),
                problems: list[tuple[Path, str]] | None = None,
                not_images: list[tuple[Path, str]] | None = None) -> Iterator[Path]:
    """``path`` itself if it is a file, else every image file below it, in sorted order. Folders and
    files in ``skip`` (the outputs, when they lie inside ``path``) are never searched; a folder that
    cannot be listed, or a link to a folder (not followed: links can loop), goes to ``problems``
    with why; any other file whose name is not an image's goes to ``not_images`` (hidden files,
    named with a leading dot, are passed over)."""
    if path.is_file():
        yield path
        return
    skipped = {folder.resolve() for folder in skip}

    def unlistable(error: OSError) -> None:
        if problems is not None:
            problems.append((Path(error.filename or path), f"folder cannot be listed: {error.strerror or error}"))

    for dirpath, dirnames, filenames in os.walk(path, onerror=unlistable, followlinks=False):
        here = Path(dirpath)
        kept = []
        for name in sorted(dirnames):
            folder = here / name
            if folder.resolve() in skipped:
                continue
            if folder.is_symlink():
                if problems is not None:
                    problems.append((folder, "a link to a folder: not followed"))
                continue
            kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            if name.startswith(".") or _resolved(here / name) in skipped:
                continue
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield here / name
            elif not_images is not None:
                not_images.append((here / name, f"not an image file name ({Path(name).suffix or 'no suffix'}): "
                                                f"give it one of {' '.join(sorted(IMAGE_SUFFIXES))} to mask it"))


def _resolved(path: Path) -> Path:
    """The real path, or the path itself where it cannot be resolved (a link loop: read_rgb reports it)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path


def output_path(source: Path, root: Path, out_dir: Path, mask: str) -> Path:
    relative = source.relative_to(root) if root.is_dir() else Path(source.name)
    suffix = source.suffix.lower() if source.suffix.lower() in (".jpg", ".jpeg", ".png") else ".png"
    return out_dir / mask / relative.with_suffix(suffix)


def write_image(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode {path.name}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def side_by_side(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.concatenate([before, np.full((before.shape[0], 8, 3), 255, np.uint8), after], axis=1)


def mask_file(source: Path, root: Path, out_dir: Path, masks: dict, aligner, seed: int,
              all_faces: bool = False, preview: bool = False,
              claimed: dict[Path, str] | None = None) -> list[MaskedFile]:
    """Mask one file with each mask type; one record per (file, mask), never an exception.

    Each face's mask is seeded by the file's path below ``root`` (its name for a single file), so
    the same image gives the same bytes however the path was typed. ``claimed`` (output path ->
    source, shared over a run) keeps two sources from writing one output file (``b.gif`` and
    ``b.png`` both become ``b.png``; a preview may take an input's name): the later gets status
    ``error``, or its preview is left out, and the first keeps its file."""
    from maskbench.faces.masks import paint_mask

    name = str(source)
    key = (source.relative_to(root) if root.is_dir() else Path(source.name)).as_posix()
    claimed = {} if claimed is None else claimed
    try:
        read = read_rgb(source)
    except Exception as exc:  # read_rgb reports bad files itself; anything else is this file's alone
        return [MaskedFile(name, m, "unreadable", 0, None, f"{type(exc).__name__}: {exc}") for m in masks]
    if read.image is None:
        return [MaskedFile(name, m, read.status, 0, None, read.reason) for m in masks]
    try:
        faces = sorted(aligner.detect(read.image), key=lambda f: -f[0].area())
        if not all_faces and faces:
            from maskbench.faces.detect import Face, choose_face

            chosen = choose_face([Face(r, s) for r, s in faces], read.image.shape,
                                 getattr(aligner, "face_choice", "largest"))
            faces = [(chosen.rect, chosen.score)]
        landmarks = [aligner.landmarks(read.image, rect) for rect, _ in faces]
    except Exception as exc:  # a detector failure on one file must not stop a folder
        return [MaskedFile(name, m, "error", 0, None, f"{type(exc).__name__}: {exc}") for m in masks]
    if not landmarks:
        return [MaskedFile(name, m, "no_face", 0, None, "the detector found no face") for m in masks]
    records = []
    for mask_name, spec in masks.items():
        dest = output_path(source, root, out_dir, mask_name)
        if _resolved(dest) == _resolved(source):
            records.append(MaskedFile(name, mask_name, "error", len(landmarks), None,
                                      f"the output would overwrite the input {dest}: choose another --out"))
            continue
        if claimed.get(dest, name) != name:
            records.append(MaskedFile(name, mask_name, "error", len(landmarks), None,
                                      f"output {dest} is already written for {claimed[dest]}"))
            continue
        try:
            out = read.image
            for k, points in enumerate(landmarks):
                out = paint_mask(out, points, spec, seed=item_seed(seed, mask_name, key, str(k)))
            claimed[dest] = name
            write_image(dest, out)
            note = None
            if preview:
                side = dest.with_name(dest.stem + "_preview.jpg")
                if claimed.get(side, name) != name:
                    note = f"no preview: {side} is already written for {claimed[side]}"
                else:
                    claimed[side] = name
                    write_image(side, side_by_side(read.image, out))
            records.append(MaskedFile(name, mask_name, "masked", len(landmarks), str(dest), note))
        except Exception as exc:
            records.append(MaskedFile(name, mask_name, "error", len(landmarks), None, f"{type(exc).__name__}: {exc}"))
    return records
