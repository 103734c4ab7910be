"""Index a dataset: one row per image in ``manifests.INDEX_SCHEMA``, from its folder layout.

The index only looks at names and folders; it never opens an image (alignment does). Every
entry it cannot use - wrong extension, malformed name, broken symlink, unreadable folder,
non-UTF-8 name - is skipped with a reason and counted in the report, never raised.

``image_id`` is the POSIX path of an image relative to the layout's top folder (``lfw-deepfunneled/``,
``gt_db/``, ...), so the same dataset gives the same ids whether it came from the official archive
or from a local copy pointing straight at that folder. ``source_path`` is the path relative to the
acquired root that alignment reads from; the two are equal when the top folder is the root.

Layouts live in :data:`LAYOUTS` (name -> function); register a function there to add one.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa

from maskbench.io.atomic import write_json, write_table
from maskbench.io.manifests import INDEX_SCHEMA, shard_of

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".gif", ".tif", ".tiff"})
MAX_EXAMPLES = 5
SEXES = {0: "male", 1: "female"}
RACES = {0: "white", 1: "black", 2: "asian", 3: "indian", 4: "others"}
ATTRIBUTES = ("identity", "age", "sex", "race", "pose", "real_mask")


class IndexLayoutError(ValueError):
    """A layout cannot be applied (unknown name, missing annotation file, bad options)."""


@dataclass
class Skips:
    """Skipped entries: a count per reason and the first few names of each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, name: str, n: int = 1) -> None:
        self.counts[reason] += n
        shown = self.examples.setdefault(reason, [])
        if len(shown) < MAX_EXAMPLES:
            shown.append(name)


@dataclass(frozen=True)
class ImageFile:
    """An image found under a layout's top folder."""

    parts: tuple[str, ...]  # path components relative to the top folder
    source_path: str  # POSIX path relative to the acquired root

    @property
    def image_id(self) -> str:
        return "/".join(self.parts)

    @property
    def name(self) -> str:
        return self.parts[-1]


# A layout turns the acquired root into rows (dicts with image_id, source_path and any of
# ATTRIBUTES), reporting what it skips.
Layout = Callable[[Path, dict[str, Any], Skips], Iterable[dict[str, Any]]]


# ----------------------------------------------------------------------------------------------
# walking a folder without ever crashing on a bad entry


def printable(name: str) -> str:
    """A file name safe to store and print: undecodable bytes shown as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode turned undecodable bytes into lone surrogates
        return False
    return True


def _stat_problem(entry: os.DirEntry) -> tuple[os.stat_result | None, str | None]:
    """The entry's stat (following symlinks), or why it cannot be used."""
    try:
        return entry.stat(follow_symlinks=True), None
    except FileNotFoundError:
        return None, "broken_symlink" if entry.is_symlink() else "vanished"
    except PermissionError:
        return None, "permission_denied"
    except OSError as exc:
        return None, "symlink_loop" if exc.errno == errno.ELOOP else "unreadable"


def _list_folder(folder: str) -> tuple[list[os.DirEntry], str | None]:
    """A folder's entries sorted by name (so traversal and examples are deterministic)."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name), None
    except PermissionError:
        return [], "permission_denied"
    except OSError as exc:
        return [], "symlink_loop" if exc.errno == errno.ELOOP else "unreadable"


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def scan_images(root: Path, top: Path, skips: Skips) -> list[ImageFile]:
    """Every readable image file under ``top`` (which is ``root`` or inside it), depth first.

    Hidden entries are ignored. Symlinks are followed, except into a folder that is one of its
    own ancestors (a loop).
    """
    prefix = Path(os.path.relpath(top, root)).parts if top != root else ()
    prefix = tuple(p for p in prefix if p != ".")
    found: list[ImageFile] = []
    top_stat = os.stat(top)
    stack: list[tuple[str, tuple[str, ...], frozenset]] = [
        (os.fspath(top), (), frozenset({(top_stat.st_dev, top_stat.st_ino)}))
    ]
    while stack:
        folder, parts, ancestors = stack.pop()
        entries, problem = _list_folder(folder)
        if problem:
            skips.add(problem, _display(prefix + parts) + "/")
        subfolders = []
        for entry in entries:
            child = parts + (entry.name,)
            kind, st = _classify(entry, child, prefix, ancestors, skips)
            if kind == "dir":
                subfolders.append((entry.path, child, ancestors | {(st.st_dev, st.st_ino)}))
            elif kind == "image":
                found.append(ImageFile(child, "/".join(prefix + child)))
        stack.extend(reversed(subfolders))
    return found


def _display(parts: tuple[str, ...]) -> str:
    return "/".join(printable(p) for p in parts)


def _classify(entry: os.DirEntry, child: tuple[str, ...], prefix: tuple[str, ...],
              ancestors: frozenset, skips: Skips) -> tuple[str | None, os.stat_result | None]:
    """('dir' | 'image' | None, stat); None means ignored, or skipped with its reason recorded."""
    if entry.name.startswith("."):
        return None, None
    shown = _display(prefix + child)
    if not _is_utf8(entry.name):
        skips.add("non_utf8_name", shown)
        return None, None
    st, problem = _stat_problem(entry)
    if problem is None:
        problem = _file_problem(entry, st, ancestors)
    if problem:
        is_folder = st is not None and stat.S_ISDIR(st.st_mode)
        skips.add(problem, shown + "/" if is_folder else shown)
        return None, None
    return ("dir" if stat.S_ISDIR(st.st_mode) else "image"), st


def _file_problem(entry: os.DirEntry, st: os.stat_result, ancestors: frozenset) -> str | None:
    """Why a stat-able entry is not a usable folder or image, or None."""
    if stat.S_ISDIR(st.st_mode):
        return "symlink_loop" if (st.st_dev, st.st_ino) in ancestors else None
    if not stat.S_ISREG(st.st_mode):
        return "not_a_regular_file"
    if not is_image_name(entry.name):
        return "not_an_image_extension"
    if not os.access(entry.path, os.R_OK):
        return "permission_denied"
    return None


def find_top(root: Path, options: dict[str, Any], candidates: tuple[str, ...] = ()) -> Path:
    """The layout's top folder: ``options['subdir']``, else the first candidate under root, else root."""
    if options.get("subdir"):
        sub = Path(str(options["subdir"]))
        if sub.is_absolute() or ".." in sub.parts:
            raise IndexLayoutError(f"options.subdir = {sub} must be a folder inside {root}, without '..'")
        top = root / sub
        if not top.is_dir():
            raise IndexLayoutError(f"options.subdir: {top} is not a folder; fix the dataset's index options")
        return top
    for name in candidates:
        if (root / name).is_dir():
            return root / name
    return root


# ----------------------------------------------------------------------------------------------
# layouts


def _per_file(files: Iterable[ImageFile], parse: Callable[[ImageFile], dict[str, Any] | str],
              skips: Skips) -> Iterator[dict[str, Any]]:
    """Rows from a per-image parser that returns attributes or a skip reason."""
    for f in files:
        parsed = parse(f)
        if isinstance(parsed, str):
            skips.add(parsed, f.source_path)
            continue
        yield {"image_id": f.image_id, "source_path": f.source_path, **parsed}


def _first_folder_identity(f: ImageFile) -> dict[str, Any] | str:
    if len(f.parts) < 2:
        return "no_identity_folder"
    return {"identity": f.parts[0]}


def layout_folder(root: Path, options: dict[str, Any], skips: Skips) -> Iterator[dict[str, Any]]:
    """``<identity>/<image>`` (images deeper are allowed; identity is the first folder level)."""
    top = find_top(root, options)
    if not options.get("subdir"):
        _refuse_wrapper_folder(top)
    return _per_file(scan_images(root, top, skips), _first_folder_identity, skips)


def _refuse_wrapper_folder(top: Path) -> None:
    """An archive made as ``zip -r set.zip set/`` puts every person under one folder: read as
    identities, everyone would be that one person (nothing would complain until the pairs)."""
    with os.scandir(top) as entries:  # (a zip made by macOS's Finder adds __MACOSX/ beside it)
        visible = [e for e in entries if not e.name.startswith(".") and e.name != "__MACOSX"]
    if len(visible) == 1 and visible[0].is_dir(follow_symlinks=False):
        name = visible[0].name
        raise IndexLayoutError(
            f"{top} holds only the folder {name!r}: as the `folder` layout reads it, every image would be "
            f"of one person, {name!r}. If the identities are its subfolders, set the dataset's "
            f"`index_options: {{subdir: {name}}}`"
        )


def lfw_style_name(f: ImageFile) -> re.Match | str:
    """The match of an LFW-style ``<Name>/<Name>_<NNNN>.<ext>`` file (groups ``name``, ``num``),
    or the skip reason where the path is not of that form (LFW, MFR2)."""
    if len(f.parts) != 2:
        return "no_identity_folder" if len(f.parts) < 2 else "unexpected_depth"
    m = re.fullmatch(r"(?P<name>.+)_(?P<num>\d{4})\.[A-Za-z]+", f.name)
    if not m or m["name"] != f.parts[0]:
        return "malformed_name"
    return m


def layout_lfw(root: Path, options: dict[str, Any], skips: Skips) -> Iterator[dict[str, Any]]:
    """LFW: ``<Name>/<Name>_<NNNN>.jpg`` under ``lfw-deepfunneled/`` (or ``lfw/``, ...) or root."""
    top = find_top(root, options, ("lfw-deepfunneled", "lfw", "lfw-funneled", "lfw_funneled"))

    def parse(f: ImageFile) -> dict[str, Any] | str:
        m = lfw_style_name(f)
        return m if isinstance(m, str) else {"identity": f.parts[0]}

    return _per_file(scan_images(root, top, skips), parse, skips)


_UTK = re.compile(r"(?P<age>\d{1,3})_(?P<sex>\d+)_(?P<race>\d+)_(?P<when>[^_]+?)\.jpg(?:\.chip\.jpg)?", re.I)


def parse_utkface_name(name: str) -> dict[str, Any] | None:
    """age, sex and race from ``<age>_<sex>_<race>_<datetime>.jpg[.chip.jpg]``, or None if malformed."""
    m = _UTK.fullmatch(name)
    if not m:
        return None
    age, sex, race = int(m["age"]), int(m["sex"]), int(m["race"])
    if sex not in SEXES or race not in RACES or not 0 <= age <= 130:
        return None
    return {"identity": None, "age": age, "sex": SEXES[sex], "race": RACES[race]}


def layout_utkface(root: Path, options: dict[str, Any], skips: Skips) -> Iterator[dict[str, Any]]:
    """UTKFace: attributes in the file name, no identities; any folder structure below the top."""
    top = find_top(root, options, ("UTKFace", "utkface"))
    return _per_file(
        scan_images(root, top, skips), lambda f: parse_utkface_name(f.name) or "malformed_name", skips
    )


def read_celeba_identities(path: Path) -> dict[str, tuple[str, str]]:
    """image stem -> (file name as listed, identity number) from ``identity_CelebA.txt``.

    Keyed by stem because the PNG release lists ``000001.jpg`` for the file ``000001.png``.
    """
    out: dict[str, tuple[str, str]] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise IndexLayoutError(
                    f"{path}:{line_no}: expected '<image> <identity-number>', got {line.strip()!r}; "
                    "is this CelebA's identity_CelebA.txt?"
                )
            out[os.path.splitext(fields[0])[0]] = (fields[0], fields[1])
    return out


def _celeba_identity_file(root: Path, options: dict[str, Any]) -> Path:
    """options['identity_file'] (relative to root, or absolute), else identity_CelebA.txt found nearby."""
    if options.get("identity_file"):
        path = root / str(options["identity_file"])
        if not path.is_file():
            raise IndexLayoutError(
                f"celeba identity file {path} not found; set options.identity_file to the path of "
                "identity_CelebA.txt relative to the images folder (or absolute)"
            )
        return path
    for candidate in (root / "identity_CelebA.txt", *sorted(root.glob("*/identity_CelebA.txt"))):
        if candidate.is_file():
            return candidate
    raise IndexLayoutError(
        f"no identity_CelebA.txt in {root} or its subfolders; download it from CelebA's Anno folder "
        "and set options.identity_file to its path"
    )


CELEBA_ATTRIBUTE_FILE = "list_attr_celeba.txt"
CELEBA_SEX = {"1": SEXES[0], "-1": SEXES[1]}  # the `Male` column: 1 male, -1 female


def read_celeba_sexes(path: Path) -> dict[str, str]:
    """image stem -> sex from the ``Male`` column of CelebA's ``list_attr_celeba.txt``.

    That file has the image count on its first line, the 40 attribute names on the second, then
    ``<image> <40 values of 1 or -1>`` per image. The comma-separated copy with an ``image_id``
    header (``list_attr_celeba.csv``, as re-distributed on Kaggle) is read too.
    """
    with open(path, encoding="utf-8") as f:
        lines = [(n, line.replace(",", " ").split()) for n, line in enumerate(f, 1) if line.strip()]
    if lines and len(lines[0][1]) == 1 and lines[0][1][0].isdigit():
        lines = lines[1:]  # the image count
    if not lines or "Male" not in lines[0][1]:
        raise IndexLayoutError(
            f"{path}: no `Male` column in its header; is this CelebA's {CELEBA_ATTRIBUTE_FILE} "
            "(Anno folder)? Fix datasets.<name>.index_options.attribute_file"
        )
    header = [name for name in lines[0][1] if name != "image_id"]
    column = header.index("Male") + 1
    out: dict[str, str] = {}
    for line_no, fields in lines[1:]:
        if len(fields) != len(header) + 1 or fields[column] not in CELEBA_SEX:
            raise IndexLayoutError(
                f"{path}:{line_no}: expected '<image>' and {len(header)} values of 1 or -1, "
                f"got {' '.join(fields)[:80]!r}; is this CelebA's {CELEBA_ATTRIBUTE_FILE}?"
            )
        out[os.path.splitext(fields[0])[0]] = CELEBA_SEX[fields[column]]
    return out


def _celeba_attribute_file(root: Path, options: dict[str, Any]) -> Path | None:
    """options['attribute_file'] (relative to root, or absolute), else list_attr_celeba.txt found
    nearby, else None (the index then has no sex)."""
    if options.get("attribute_file"):
        path = root / str(options["attribute_file"])
        if not path.is_file():
            raise IndexLayoutError(
                f"celeba attribute file {path} not found; set options.attribute_file to the path of "
                f"{CELEBA_ATTRIBUTE_FILE} (CelebA's Anno folder) relative to the images folder (or absolute)"
            )
        return path
    for candidate in (root / CELEBA_ATTRIBUTE_FILE, *sorted(root.glob(f"*/{CELEBA_ATTRIBUTE_FILE}"))):
        if candidate.is_file():
            return candidate
    return None


def layout_celeba(root: Path, options: dict[str, Any], skips: Skips) -> Iterator[dict[str, Any]]:
    """CelebA: images matched to ``identity_CelebA.txt`` by file stem (jpg or png release); sex
    from ``list_attr_celeba.txt`` where present (an image it does not list has none)."""
    identities = read_celeba_identities(_celeba_identity_file(root, options))
    attribute_file = _celeba_attribute_file(root, options)
    sexes = read_celeba_sexes(attribute_file) if attribute_file else {}
    top = find_top(root, options, ("img_align_celeba_png", "img_align_celeba", "images"))
    seen: set[str] = set()

    def parse(f: ImageFile) -> dict[str, Any] | str:
        stem = os.path.splitext(f.name)[0]
        if stem not in identities:
            return "no_identity"
        if stem in seen:
            return "duplicate_image"
        seen.add(stem)
        return {"identity": identities[stem][1], "sex": sexes.get(stem)}

    yield from _per_file(scan_images(root, top, skips), parse, skips)
    for stem in sorted(set(identities) - seen):
        skips.add("missing_image", identities[stem][0])


def layout_fei_face_original(root: Path, options: dict[str, Any], skips: Skips) -> Iterator[dict[str, Any]]:
    """FEI original images ``<subject>-<pose>.jpg``: subject 1-200 is the identity, pose 01-14."""
    top = find_top(root, options)

    def parse(f: ImageFile) -> dict[str, Any] | str:
        m = re.fullmatch(r"(\d{1,3})-(\d{2})\.jpe?g", f.name, re.I)
        if not m or not 1 <= int(m[1]) <= 200 or not 1 <= int(m[2]) <= 14:
            return "malformed_name"
        return {"identity": str(int(m[1])), "pose": m[2]}

    return _per_file(scan_images(root, top, skips), parse, skips)


def layout_fei_face_frontal(root: Path, options: dict[str, Any], skips: Skips) -> Iterator[dict[str, Any]]:
    """FEI frontal images ``<subject>a.jpg`` / ``<subject>b.jpg``.

    The expression goes into the pose column: "a" = neutral, "b" = smiling.
    """
    top = find_top(root, options)

    def parse(f: ImageFile) -> dict[str, Any] | str:
        m = re.fullmatch(r"(\d{1,3})([ab])\.jpe?g", f.name, re.I)
        if not m or not 1 <= int(m[1]) <= 200:
            return "malformed_name"
        return {"identity": str(int(m[1])), "pose": m[2].lower()}

    return _per_file(scan_images(root, top, skips), parse, skips)


def layout_georgia_tech(root: Path, options: dict[str, Any], skips: Skips) -> Iterator[dict[str, Any]]:
    """Georgia Tech face database: ``gt_db/sNN/NN.jpg``, identity ``sNN``."""
    top = find_top(root, options, ("gt_db",))

    def parse(f: ImageFile) -> dict[str, Any] | str:
        if len(f.parts) != 2 or not re.fullmatch(r"s\d+", f.parts[0]):
            return "no_identity_folder" if len(f.parts) < 2 else "malformed_name"
        return {"identity": f.parts[0]}

    return _per_file(scan_images(root, top, skips), parse, skips)


def layout_sof_original(root: Path, options: dict[str, Any], skips: Skips) -> Iterator[dict[str, Any]]:
    """Specs on Faces (SoF) original images.

    Assumption: the subject id is the first ``_``-separated token of the file name
    (``0001_00000001_...jpg`` -> identity ``0001``), as in SoF's published naming scheme; names
    without an ``_`` are skipped as malformed.
    """
    top = find_top(root, options)

    def parse(f: ImageFile) -> dict[str, Any] | str:
        subject, sep, _ = f.name.partition("_")
        if not sep or not subject:
            return "malformed_name"
        return {"identity": subject}

    return _per_file(scan_images(root, top, skips), parse, skips)


def _natural_key(name: str) -> tuple:
    """Sort key with digit runs compared as numbers (frame 9 before frame 10)."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def evenly_spaced(n: int, k: int | None) -> list[int]:
    """k indices spread evenly over range(n), each at the centre of its 1/k slice; all if k >= n."""
    if k is None or k >= n:
        return list(range(n))
    return [(2 * i + 1) * n // (2 * k) for i in range(k)]


def layout_youtube_faces(root: Path, options: dict[str, Any], skips: Skips) -> Iterator[dict[str, Any]]:
    """YouTube Faces: ``frame_images_DB/<Name>/<video#>/<frame>.jpg``, identity = Name.

    options ``frames_per_video: k`` keeps k frames per video, evenly spaced over the frames in
    natural sort order - deterministic without any random generator, so ``seed`` is accepted but
    not needed. The video (``Name/<video#>``) is the image's ``group``: frames of one video are
    near-duplicates and never form a genuine pair.
    Frames left out are counted as ``not_sampled``.
    """
    top = find_top(root, options, ("frame_images_DB",))
    k = options.get("frames_per_video")
    if k is not None and (not isinstance(k, int) or k < 1):
        raise IndexLayoutError(f"options.frames_per_video must be a positive integer, got {k!r}")
    videos: dict[tuple[str, str], list[ImageFile]] = {}
    for f in scan_images(root, top, skips):
        if len(f.parts) != 3:
            skips.add("unexpected_depth", f.source_path)
            continue
        videos.setdefault(f.parts[:2], []).append(f)
    for (name, _video), frames in sorted(videos.items()):
        frames.sort(key=lambda f: _natural_key(f.name))
        keep = set(evenly_spaced(len(frames), k))
        for i, f in enumerate(frames):
            if i in keep:
                yield {"image_id": f.image_id, "source_path": f.source_path, "identity": name,
                       "group": f"{name}/{_video}"}
            else:
                skips.add("not_sampled", f.source_path)


def layout_real_masked(root: Path, options: dict[str, Any], skips: Skips) -> Iterator[dict[str, Any]]:
    """Real masked faces (MFR2/RMFRD style): ``<identity>/{masked,unmasked}/<image>``.

    Subfolder names from options ``masked_dir`` / ``unmasked_dir``; sets ``real_mask``.
    """
    top = find_top(root, options)
    kinds = {str(options.get("masked_dir", "masked")): True, str(options.get("unmasked_dir", "unmasked")): False}

    def parse(f: ImageFile) -> dict[str, Any] | str:
        if len(f.parts) < 2:
            return "no_identity_folder"
        if len(f.parts) < 3 or f.parts[1] not in kinds:
            return "not_in_mask_folder"
        return {"identity": f.parts[0], "real_mask": kinds[f.parts[1]]}

    return _per_file(scan_images(root, top, skips), parse, skips)


DEMO_REAL_MASK_DIR = "real_mask"


def layout_demo(root: Path, options: dict[str, Any], skips: Skips) -> Iterator[dict[str, Any]]:
    """The generated demo set: ``<identity>/<image>``; images the generator drew with a mask on
    (``generate: {real_masks: k}``) are under ``<identity>/real_mask/`` and get ``real_mask``."""

    def parse(f: ImageFile) -> dict[str, Any] | str:
        if len(f.parts) < 2:
            return "no_identity_folder"
        if len(f.parts) == 3 and f.parts[1] == DEMO_REAL_MASK_DIR:
            return {"identity": f.parts[0], "real_mask": True}
        return {"identity": f.parts[0]}

    return _per_file(scan_images(root, find_top(root, options), skips), parse, skips)


def _two_folder_layout(root: Path, top: Path, folders: dict[str, tuple[bool, str]],
                       skips: Skips) -> Iterator[dict[str, Any]]:
    """``<kind folder>/<identity folder>/<image>``: folders maps a kind folder to (real_mask, the
    suffix its identity folders carry); images elsewhere are skipped as not_in_mask_folder."""

    def parse(f: ImageFile) -> dict[str, Any] | str:
        if len(f.parts) != 3 or f.parts[0] not in folders:
            return "not_in_mask_folder"
        real, suffix = folders[f.parts[0]]
        name = f.parts[1]
        if suffix:
            if not name.endswith(suffix) or name == suffix:
                return "malformed_name"
            name = name[: -len(suffix)]
        return {"identity": name, "real_mask": real}

    return _per_file(scan_images(root, top, skips), parse, skips)


def layout_rmfrd(root: Path, options: dict[str, Any], skips: Skips) -> Iterator[dict[str, Any]]:
    """RMFRD (Real-World Masked Face Recognition Dataset, Wuhan University): bare photos in
    ``AFDB_face_dataset/<name>/``, real masked ones in ``AFDB_masked_face_dataset/<name>/``."""
    top = find_top(root, options, ("self-built-masked-face-recognition-dataset", "RMFRD", "rmfrd"))
    folders = {"AFDB_face_dataset": (False, ""), "AFDB_masked_face_dataset": (True, "")}
    return _two_folder_layout(root, top, folders, skips)


def layout_rof(root: Path, options: dict[str, Any], skips: Skips) -> Iterator[dict[str, Any]]:
    """Real World Occluded Faces (ROF) as commonly laid out: ``neutral/<name>/`` bare photos and
    ``masked/<name>_wearing_mask/`` real masked ones (``sunglasses/`` is skipped and counted)."""
    top = find_top(root, options, ("RealWorldOccludedFaces", "ROF", "rof", "images"))
    folders = {"neutral": (False, ""), "masked": (True, "_wearing_mask")}
    return _two_folder_layout(root, top, folders, skips)


MFR2_LABELS = "mfr2_labels.txt"
MFR2_BARE = "no-mask"


def read_mfr2_labels(path: Path) -> dict[tuple[str, int], str]:
    """(identity, image number) -> mask type from MFR2's ``mfr2_labels.txt`` (lines
    ``<Name>, <n>, <mask type>``; ``no-mask`` marks a bare photo)."""
    out: dict[tuple[str, int], str] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = [p.strip() for p in line.split(",")]
        if len(fields) != 3 or not fields[1].isdigit() or not fields[0] or not fields[2]:
            raise IndexLayoutError(f"{path}:{line_no}: expected '<name>, <image number>, <mask type>', "
                                   f"got {line.strip()!r}; is this MFR2's {MFR2_LABELS}?")
        out[(fields[0], int(fields[1]))] = fields[2]
    return out


def _mfr2_labels(root: Path, options: dict[str, Any]) -> tuple[Path, dict[tuple[str, int], str]]:
    top = find_top(root, options, ("mfr2", "MFR2"))
    label_file = top / MFR2_LABELS if (top / MFR2_LABELS).is_file() else root / MFR2_LABELS
    if options.get("labels_file"):
        label_file = root / str(options["labels_file"])
    if not label_file.is_file():
        raise IndexLayoutError(f"no {MFR2_LABELS} in {top}; it comes with MFR2 (set "
                               "index_options.labels_file to its path relative to the images folder)")
    return top, read_mfr2_labels(label_file)


def mfr2_mask_types(root: Path, options: dict[str, Any] | None = None) -> dict[str, str]:
    """image_id -> the kind of real mask MFR2's labels give each real-masked image (for the
    realism table's breakdown by mask type)."""
    options = dict(options or {})
    _, labels = _mfr2_labels(Path(root), options)
    rows = layout_mfr2(Path(root), options, Skips())
    out = {}
    for row in rows:
        if row["real_mask"]:
            m = re.fullmatch(r"(?P<name>.+)_(?P<num>\d{4})\.[A-Za-z]+", row["image_id"].split("/")[-1])
            out[row["image_id"]] = labels[(m["name"], int(m["num"]))]
    return out


def layout_mfr2(root: Path, options: dict[str, Any], skips: Skips) -> Iterator[dict[str, Any]]:
    """MFR2 (MaskTheFace's real masked set): ``mfr2/<Name>/<Name>_<NNNN>.png``, 160x160 aligned
    crops; ``mfr2_labels.txt`` beside them says which are bare (``no-mask``) and which show a
    real mask. An image it does not list is skipped and counted."""
    top, labels = _mfr2_labels(root, options)

    def parse(f: ImageFile) -> dict[str, Any] | str:
        m = lfw_style_name(f)
        if isinstance(m, str):
            return m
        kind = labels.get((m["name"], int(m["num"])))
        if kind is None:
            return "not_in_labels"
        return {"identity": f.parts[0], "real_mask": kind != MFR2_BARE}

    return _per_file(scan_images(root, top, skips), parse, skips)


REAL_MASK_LAYOUTS = frozenset({"real_masked", "mfr2", "rmfrd", "rof"})
"""Layouts whose sets hold photos of real masks (the demo has them with ``generate.real_masks``)."""
GROUPED_LAYOUTS = frozenset({"youtube_faces"})
"""Layouts whose index has a `group` per image (a video): near-duplicate frames that pairs keep apart."""


LAYOUTS: dict[str, Layout] = {
    "lfw": layout_lfw,
    "folder": layout_folder,
    "demo": layout_demo,
    "utkface": layout_utkface,
    "celeba": layout_celeba,
    "fei_face_original": layout_fei_face_original,
    "fei_face_frontal": layout_fei_face_frontal,
    "georgia_tech": layout_georgia_tech,
    "sof_original": layout_sof_original,
    "youtube_faces": layout_youtube_faces,
    "real_masked": layout_real_masked,
    "mfr2": layout_mfr2,
    "rmfrd": layout_rmfrd,
    "rof": layout_rof,
}


def layout_attributes(layout: str, options: dict[str, Any] | None = None) -> frozenset[str]:
    """Index columns among age, sex and race that a layout fills in with these options (a
    layout added to :data:`LAYOUTS` that reads such attributes is listed here too)."""
    options = options or {}
    if layout == "utkface":
        return frozenset({"age", "sex", "race"})
    if layout == "celeba" and options.get("attribute_file"):
        return frozenset({"sex"})
    return frozenset()


# ----------------------------------------------------------------------------------------------
# the table


def rows_to_table(rows: list[dict[str, Any]], n_shards: int) -> pa.Table:
    """INDEX_SCHEMA table sorted by image_id, with the shard of each image."""
    rows = sorted(rows, key=lambda r: r["image_id"])
    columns: dict[str, list] = {name: [] for name in INDEX_SCHEMA.names}
    for row in rows:
        for name in INDEX_SCHEMA.names:
            columns[name].append(row.get(name))
    columns["shard"] = [shard_of(r["image_id"], n_shards) for r in rows]
    return pa.Table.from_pydict(columns, schema=INDEX_SCHEMA)


def _check_unique(rows: list[dict[str, Any]], layout: str) -> None:
    counts = Counter(r["image_id"] for r in rows)
    dupes = sorted(i for i, c in counts.items() if c > 1)
    if dupes:
        raise IndexLayoutError(f"layout {layout!r} produced duplicate image ids, e.g. {dupes[:3]}")


def build_index(layout: str, root: Path, n_shards: int,
                options: dict[str, Any] | None = None) -> tuple[pa.Table, dict[str, Any]]:
    """The index table of the images under ``root`` and a report of what was found and skipped."""
    if layout not in LAYOUTS:
        raise IndexLayoutError(f"unknown layout {layout!r}; known: {sorted(LAYOUTS)}")
    if not isinstance(n_shards, int) or n_shards < 1:
        raise IndexLayoutError(f"n_shards must be a positive integer, got {n_shards!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; run the acquire step for this dataset again")
    skips = Skips()
    rows = list(LAYOUTS[layout](root, dict(options or {}), skips))
    _check_unique(rows, layout)
    table = rows_to_table(rows, n_shards)
    report = {
        "identities": len({r.get("identity") for r in rows} - {None}),
        "images": table.num_rows,
        "skipped": dict(sorted(skips.counts.items())),
        "skipped_examples": {k: skips.examples[k] for k in sorted(skips.examples)},
    }
    return table, report


def write_index(table: pa.Table, report: dict[str, Any], parquet_path: str | os.PathLike,
                json_path: str | os.PathLike) -> None:
    """Write the table and its report, each atomically (a reader never sees half a file)."""
    if not table.schema.equals(INDEX_SCHEMA):
        raise ValueError(f"index table schema differs from INDEX_SCHEMA:\n{table.schema}")
    write_table(parquet_path, table)
    write_json(json_path, report)
