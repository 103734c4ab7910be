"""LFW View 2 accuracy of dlib's face ResNet under the alignment and embedding settings that move it.

    python benchmarks/bench_view2.py                      # LFW-mini (2 folds x 120 pairs), ~3 min
    python benchmarks/bench_view2.py --pairs pairs.txt --images lfw-deepfunneled.tgz --jitters 0,10,100

Every image of the pair list is read once and searched once per HOG upsampling (0 and 1; MMOD with
``--mmod``); each setting then keeps a face (largest or nearest the centre), fits landmarks (68 as
the pipeline does, or dlib's 5), cuts a 150 px chip at a padding and embeds it with the torch port
(``jitter`` crops averaged) or with dlib's own ``compute_face_descriptor`` (the reference). A photo
where no face is found is fitted in the LFW config's fallback box, as the align stage does, so
every pair is scored. Scores are -L2 (dlib's convention); accuracy is LFW's: per fold, the
threshold chosen on the other folds. Also printed: the accuracy at dlib's fixed 0.6 distance and,
per setting, the pairs it gets wrong with each photo's number of detections (several faces in a
photo is where the chosen face may not be LFW's subject, the centred one), and d' (the gap between
genuine and impostor mean distances in pooled standard deviations: on a few hundred pairs it moves
where accuracy cannot, one pair being a whole step).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

from maskbench.evaluation.metrics import d_prime, kfold_accuracy
from maskbench.faces.detect import Face, choose_face
from maskbench.io.model_files import model_path
from maskbench.protocols.pairs import parse_lfw_pairs

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT.parent / "shared" / "data" / "lfw-mini"
FALLBACK_BOX = (0.268, 0.32, 0.7, 0.748)  # config/lfw.yaml: the median detector box of LFW
DLIB_THRESHOLD = 0.6  # dlib's same-person distance


@dataclass(frozen=True)
class Setting:
    name: str
    detector: str = "hog"
    upsample: str = "on_miss"  # "0", "1", or "on_miss": native size, upsampled once where nothing found
    choice: str = "largest"
    padding: float = 0.25
    points: int = 68
    jitter: int = 0
    backend: str = "torch"


def settings(jitters: list[int], mmod: bool, reference: bool) -> list[Setting]:
    out = [
        Setting("largest (lfw.yaml before)"),
        Setting("centre (lfw.yaml)", choice="centre"),
        Setting("upsample 0", upsample="0"),
        Setting("upsample 1", upsample="1"),
        Setting("upsample 1, centre", upsample="1", choice="centre"),
        Setting("padding 0.2, centre", choice="centre", padding=0.2),
        Setting("padding 0.3, centre", choice="centre", padding=0.3),
        Setting("5 points, centre", choice="centre", points=5),
    ]
    out += [Setting("MMOD on HOG's misses, centre", detector="hog+cnn", choice="centre"),
            Setting("MMOD on HOG's misses, 5 points, centre", detector="hog+cnn", choice="centre", points=5)]
    out += [Setting(f"jitter {j}, centre", choice="centre", jitter=j) for j in jitters if j]
    out += [Setting(f"jitter {j}, MMOD on misses, centre", detector="hog+cnn", choice="centre", jitter=j)
            for j in jitters if j]
    out += [Setting(f"jitter {j}, 5 points, centre", choice="centre", points=5, jitter=j) for j in jitters if j]
    if mmod:
        out += [Setting("MMOD, centre", detector="cnn", upsample="0", choice="centre"),
                Setting("MMOD, 5 points, centre", detector="cnn", upsample="0", choice="centre", points=5)]
    if reference:
        out.append(Setting("dlib compute_face_descriptor (5 points, centre)", choice="centre", points=5,
                           backend="dlib"))
    return out


# --- images ---------------------------------------------------------------------------------------

_NAME = re.compile(r"(?P<name>.+)_(?P<num>\d{4})\.(jpg|jpeg|png)$", re.IGNORECASE)


def read_images(source: Path, wanted: set[tuple[str, int]]) -> dict[tuple[str, int], np.ndarray]:
    """RGB arrays of the wanted (person, number) photos from a .tgz archive or a folder."""
    def key(path: str) -> tuple[str, int] | None:
        m = _NAME.match(os.path.basename(path))
        return (m["name"], int(m["num"])) if m else None

    out = {}
    if source.is_file():
        with tarfile.open(source) as tar:
            for member in tar:
                k = key(member.name) if member.isfile() else None
                if k in wanted:
                    out[k] = np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB"))
    else:
        for path in source.rglob("*"):
            k = key(path.name)
            if k in wanted:
                out[k] = np.asarray(Image.open(path).convert("RGB"))
    missing = wanted - set(out)
    if missing:
        raise SystemExit(f"{len(missing)} photos of the pair list are not in {source}, e.g. {sorted(missing)[:3]}")
    return out


# --- alignment ------------------------------------------------------------------------------------


class Detections:
    """Faces per photo and detector/upsampling, each search run once."""

    def __init__(self, images: dict, mmod: bool) -> None:
        self.images = images
        self._hog = dlib.get_frontal_face_detector()
        self._cnn = dlib.cnn_face_detection_model_v1(str(model_path("cnn_face_detector")))
        self._cache: dict = {}
        self.seconds: dict[str, float] = {}

    def _run(self, detector: str, upsample: int, key) -> list[Face]:
        k = (detector, upsample, key)
        if k not in self._cache:
            t = time.process_time()
            rgb = self.images[key]
            if detector == "hog":
                rects, scores, _ = self._hog.run(rgb, upsample, 0.0)
                self._cache[k] = [Face(r, float(s)) for r, s in zip(rects, scores)]
            else:
                self._cache[k] = [Face(d.rect, float(d.confidence)) for d in self._cnn(rgb, upsample)]
            label = f"{detector} upsample {upsample}"
            self.seconds[label] = self.seconds.get(label, 0.0) + time.process_time() - t
        return self._cache[k]

    def faces(self, setting: Setting, key) -> list[Face]:
        if setting.detector == "hog+cnn":  # HOG as the pipeline; MMOD only where HOG found nothing
            return (self.faces(Setting("", upsample=setting.upsample), key)
                    or self._run("cnn", 0, key) or self._run("cnn", 1, key))
        if setting.upsample == "on_miss":  # as FaceAligner with upsample_on_miss
            return self._run(setting.detector, 0, key) or self._run(setting.detector, 1, key)
        return self._run(setting.detector, int(setting.upsample), key)


class Chips:
    """The chip (or dlib's full_object_detection, for the reference) of a photo under a setting."""

    def __init__(self, detections: Detections) -> None:
        self.det = detections
        self._p68 = dlib.shape_predictor(str(model_path("shape_predictor_68")))
        self._p5 = dlib.shape_predictor(str(model_path("shape_predictor_5")))

    def shape(self, setting: Setting, key) -> tuple["dlib.full_object_detection", int]:
        """The chosen face's landmarks, and the number of faces found (0: fallback box)."""
        rgb = self.det.images[key]
        faces = self.det.faces(setting, key)
        big = [f for f in faces if min(f.rect.width(), f.rect.height()) >= 20] or faces  # align's min_face
        if big:
            rect = choose_face(big, rgb.shape, setting.choice).rect
        else:
            h, w = rgb.shape[:2]
            rect = dlib.rectangle(*(int(round(v * s)) for v, s in zip(FALLBACK_BOX, (w, h, w, h))))
        predictor = self._p68 if setting.points == 68 else self._p5
        return predictor(rgb, rect), len(big)

    def chip(self, setting: Setting, key) -> tuple[np.ndarray, int]:
        shape, n = self.shape(setting, key)
        details = dlib.get_face_chip_details(shape, 150, setting.padding)
        return np.asarray(dlib.extract_image_chip(self.det.images[key], details), dtype=np.uint8), n


# --- embedding and scoring ------------------------------------------------------------------------


def embed(setting: Setting, keys: list, chips: Chips, threads: int) -> tuple[dict, dict]:
    """Descriptor and detection count per photo."""
    from maskbench.models.embed import make_embedder

    if setting.backend == "dlib":
        model = dlib.face_recognition_model_v1(str(model_path("face_recognition_resnet")))
        vectors, counts = {}, {}
        for k in keys:
            shape, counts[k] = chips.shape(setting, k)
            vectors[k] = np.asarray(model.compute_face_descriptor(chips.det.images[k], shape, setting.jitter,
                                                                  setting.padding), dtype=np.float32)
        return vectors, counts
    made = [chips.chip(setting, k) for k in keys]
    embedder = make_embedder({"kind": "dlib_resnet", "jitter": setting.jitter}, threads=threads)
    matrix = embedder.embed(np.stack([c for c, _ in made]))
    return dict(zip(keys, matrix)), {k: n for k, (_, n) in zip(keys, made)}


def score(pairs, vectors: dict, counts: dict) -> dict:
    dist = np.array([np.linalg.norm(vectors[(a, i)] - vectors[(b, j)]) for a, i, b, j, _, _ in pairs])
    labels = np.array([g for *_, g, _ in pairs])
    folds = np.array([f for *_, f in pairs])
    acc = kfold_accuracy(-dist, labels, folds)
    wrong = []
    for fold, t in zip(np.unique(folds), acc.thresholds):
        for k in np.flatnonzero(folds == fold):
            if (-dist[k] >= t) != labels[k]:
                a, i, b, j, g, _ = pairs[k]
                wrong.append((f"{a}_{i:04d}", f"{b}_{j:04d}", bool(g), float(dist[k]), -t,
                              counts[(a, i)], counts[(b, j)]))
    return {"kfold": acc, "at_06": float(np.mean((dist < DLIB_THRESHOLD) == labels)), "wrong": wrong,
            "d_prime": d_prime(-dist[labels], -dist[~labels]), "dist": dist, "labels": labels}


def _d_primes(dist: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """d' of each bootstrap sample (rows of pair indices)."""
    d, g = dist[idx], labels[idx]
    n_g, n_i = g.sum(1), (~g).sum(1)
    m_g, m_i = (d * g).sum(1) / n_g, (d * ~g).sum(1) / n_i
    v_g = ((d - m_g[:, None]) ** 2 * g).sum(1) / n_g
    v_i = ((d - m_i[:, None]) ** 2 * ~g).sum(1) / n_i
    return np.abs(m_i - m_g) / np.sqrt((v_g + v_i) / 2)


def paired_d_prime_gain(result: dict, base: dict, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of d'(setting) - d'(base) over pairs resampled together (a paired bootstrap)."""
    idx = np.random.default_rng(seed).integers(0, base["dist"].size, (n, base["dist"].size))
    diff = _d_primes(result["dist"], result["labels"], idx) - _d_primes(base["dist"], base["labels"], idx)
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return float(lo), float(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=Path, default=MINI / "pairs.txt", help="a View 2 pairs.txt")
    ap.add_argument("--images", type=Path, default=MINI / "lfw-deepfunneled-mini.tgz",
                    help="the LFW archive (.tgz) or an extracted folder")
    ap.add_argument("--jitters", default="0,10", help="comma-separated jitter counts (0 = none; 100 costs 100x)")
    ap.add_argument("--mmod", action="store_true",
                    help="also dlib's MMOD CNN detector on every photo (~0.4 CPU-s per photo; by default it runs "
                         "only where HOG found no face)")
    ap.add_argument("--no-reference", action="store_true", help="skip dlib's own compute_face_descriptor")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", help="run only the settings whose name contains one of these |-separated texts")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    pairs = parse_lfw_pairs(args.pairs.read_text())
    keys = sorted({(a, i) for a, i, *_ in pairs} | {(b, j) for _, _, b, j, *_ in pairs})
    t = time.perf_counter()
    images = read_images(args.images, set(keys))
    n_folds = len({p[5] for p in pairs})
    print(f"{len(pairs)} pairs in {n_folds} folds, {len(keys)} photos (read in {time.perf_counter() - t:.1f} s); "
          f"one pair = {100 / len(pairs):.2f}% of the accuracy")
    jitters = [int(j) for j in args.jitters.split(",") if j.strip()]
    detections = Detections(images, args.mmod)
    for up in ("on_miss", "1"):
        found = {k: detections.faces(Setting("", upsample=up), k) for k in keys}
        several = [k for k, f in found.items() if len(f) > 1]
        moved = [k for k in several if choose_face(found[k], images[k].shape, "largest").rect
                 != choose_face(found[k], images[k].shape, "centre").rect]
        missed = [f"{a}_{i:04d}" for (a, i), f in found.items() if not f]
        print(f"HOG upsample {up}: {len(several)} photos with 2+ faces, in {len(moved)} the largest is not "
              f"the centred one{': ' + ', '.join(f'{a}_{i:04d}' for a, i in moved) if moved else ''}; "
              f"{len(missed)} with none{': ' + ', '.join(missed) if missed else ''}")
    chips = Chips(detections)
    rows = []
    for setting in settings(jitters, args.mmod, not args.no_reference):
        if args.only and not any(part in setting.name for part in args.only.split("|")):
            continue
        t = time.process_time()
        vectors, counts = embed(setting, keys, chips, args.threads)
        cpu = time.process_time() - t
        result = score(pairs, vectors, counts)
        several = sum(n > 1 for n in counts.values())
        missed = sum(n == 0 for n in counts.values())
        rows.append((setting, result, cpu, several, missed))
        acc = result["kfold"]
        print(f"\n== {setting.name}: {100 * acc.mean:.2f}% +- {100 * acc.std_error:.2f} "
              f"(folds {', '.join(f'{100 * a:.1f}' for a in acc.fold_accuracies)}), at 0.6: "
              f"{100 * result['at_06']:.2f}%; {several} photos with 2+ faces, {missed} fallback; "
              f"{cpu:.1f} CPU-s ({1000 * cpu / len(keys):.1f} ms/photo, detection cached)")
        for a, b, genuine, d, thr, na, nb in result["wrong"]:
            kind = "same  " if genuine else "differ"
            flag = "  <- 2+ faces" if max(na, nb) > 1 else ""
            print(f"   {kind} {a:<36} {b:<36} dist {d:.3f} (thr {thr:.3f}) faces {na},{nb}{flag}")
    print("\ndetection CPU-s per photo: " + ", ".join(
        f"{k} {1000 * v / len(keys):.1f} ms" for k, v in sorted(detections.seconds.items())))
    print(f"\n| setting | {n_folds}-fold accuracy % | std err | at 0.6 % | errors | errors with 2+ faces | "
          f"photos with 2+ faces | d' | d' gain vs lfw.yaml (95% paired bootstrap) | embed ms/photo |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = next((r for st, r, *_ in rows if st.name == "centre (lfw.yaml)"), rows[0][1])
    for setting, result, cpu, several, _ in rows:
        multi = sum(max(w[5], w[6]) > 1 for w in result["wrong"])
        print(f"| {setting.name} | {100 * result['kfold'].mean:.2f} | {100 * result['kfold'].std_error:.2f} | "
              f"{100 * result['at_06']:.2f} | {len(result['wrong'])} | {multi} | {several} | "
              f"{result['d_prime']:.3f} | {result['d_prime'] - base['d_prime']:+.3f} "
              f"[{'{:+.3f}, {:+.3f}'.format(*paired_d_prime_gain(result, base))}] | {1000 * cpu / len(keys):.1f} |")


if __name__ == "__main__":
    main()
