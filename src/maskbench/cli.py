"""The ``maskbench`` command: put synthetic masks on images, list the mask types."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections import Counter
from pathlib import Path

import yaml

from maskbench.io.atomic import write_text
from maskbench.data.index import printable


def load_mask_specs(config: str | None, names: list[str] | None) -> dict:
    """Mask types by name: from a workflow config if given, else the built-in defaults."""
    from maskbench.faces.masks import DEFAULT_MASKS, MaskSpec

    available = DEFAULT_MASKS
    if config:
        try:
            with open(config, encoding="utf-8") as f:
                available = (yaml.safe_load(f) or {}).get("masks") or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SystemExit(f"--config {config}: {exc}") from None
        if not available:
            raise SystemExit(f"{config} defines no mask types (no `masks:` section)")
    unknown = [n for n in names or [] if n not in available]
    if unknown:
        raise SystemExit(f"unknown mask type(s) {', '.join(unknown)}; known: {', '.join(available)}")
    chosen = names or list(available)
    specs = {}
    for name in chosen:
        try:
            specs[name] = MaskSpec.from_dict(available[name])
        except (TypeError, ValueError) as exc:
            raise SystemExit(f"mask type {name!r}: {exc}") from None
    return specs


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def cmd_mask(args: argparse.Namespace) -> int:
    from maskbench.faces.align import FaceAligner
    from maskbench.faces.mask_files import MaskedFile, iter_images, mask_file

    path = Path(args.path)
    if not path.exists():
        print(f"error: {path} does not exist", file=sys.stderr)
        return 2
    masks = load_mask_specs(args.config, args.mask)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        print(f"error: --out {out_dir} is a file, not a folder", file=sys.stderr)
        return 2
    outputs = [out_dir / m for m in masks]
    for folder in outputs:  # masking a folder's files into itself would overwrite them
        if folder.resolve() == path.resolve() or folder.resolve() in path.resolve().parents:
            print(f"error: {path} lies inside the output folder {folder}: its files would be overwritten; "
                  f"choose another --out", file=sys.stderr)
            return 2
    aligner = FaceAligner(detector=args.detector, upsample=args.upsample, face_choice=args.face_choice)
    records, problems, not_images, claimed = [], [], [], {}
    report = out_dir / "mask_report.csv"
    # the outputs are never read as input (a second run would mask its own outputs)
    for source in iter_images(path, skip=[out_dir, *outputs, report], problems=problems, not_images=not_images):
        records.extend(mask_file(source, path, out_dir, masks, aligner, args.seed, args.all_faces, args.preview,
                                 claimed))
    records.extend(MaskedFile(str(folder), m, "unreadable", 0, None, why) for folder, why in problems for m in masks)
    records.extend(MaskedFile(str(file), m, "skipped", 0, None, why) for file, why in not_images for m in masks)
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["source", "mask", "status", "faces", "output", "reason"])
    for r in records:  # undecodable bytes in a file name are written as \xNN, never a crash
        writer.writerow([printable(r.source), r.mask, r.status, r.faces,
                         printable(r.output) if r.output else "", r.reason or ""])
    write_text(report, buffer.getvalue())
    files = Counter()
    for r in records:
        files[r.status] += 1
    n_files = len({r.source for r in records})
    print(f"{n_files} file(s) x {len(masks)} mask type(s): "
          + ", ".join(f"{k} {v}" for k, v in sorted(files.items())))
    for r in records:
        if r.status != "masked" and r.mask == next(iter(masks)):
            print(f"  {r.status}: {printable(r.source)} ({r.reason})")
    print(f"report: {report}")
    return 0


def cmd_masks(args: argparse.Namespace) -> int:
    masks = load_mask_specs(args.config, None)
    for name, spec in masks.items():
        d = spec.to_dict()
        print(f"{name:24s} " + " ".join(f"{k}={v}" for k, v in d.items() if v is not None))
    if args.sheet:
        from maskbench.io.atomic import atomic_path
        from maskbench.faces.preview import preview_sheet

        import cv2

        sheet = preview_sheet(masks)
        with atomic_path(args.sheet) as tmp:
            ok, buf = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
            tmp.write_bytes(buf.tobytes())
        print(f"preview sheet: {args.sheet}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    mask = sub.add_parser("mask", help="put synthetic masks on an image or a folder of images")
    mask.add_argument("path", help="an image file or a folder (searched recursively)")
    mask.add_argument("--mask", action="append", metavar="TYPE",
                      help="mask type (repeatable; default: every type); see `maskbench masks`")
    mask.add_argument("--out", default="masked", help="output folder (default: ./masked)")
    mask.add_argument("--config", help="take mask types from this workflow config instead of the defaults")
    mask.add_argument("--all-faces", action="store_true", help="mask every face, not only the largest")
    mask.add_argument("--preview", action="store_true", help="also write side-by-side previews")
    mask.add_argument("--seed", type=int, default=0)
    mask.add_argument("--detector", choices=["hog", "cnn", "mediapipe"], default="hog",
                      help="hog (dlib), cnn (dlib MMOD, slow) or mediapipe (finds masked faces; optional install)")
    mask.add_argument("--face-choice", choices=["largest", "centre"], default="largest",
                      help="face kept without --all-faces: the largest, or the one nearest the centre")
    mask.add_argument("--upsample", type=non_negative, default=1, help="detector upsampling (finds smaller faces)")
    mask.set_defaults(func=cmd_mask)

    masks = sub.add_parser("masks", help="list the mask types; optionally write a preview sheet")
    masks.add_argument("--config", help="list the mask types of this workflow config")
    masks.add_argument("--sheet", help="write a PNG preview of every type on synthetic demo faces")
    masks.set_defaults(func=cmd_masks)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
