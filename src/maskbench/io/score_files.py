"""Score files exchanged with other tools: Bob's 4- and 5-column text files and CSV, in and out.

Bob (``bob.bio.base``) writes one comparison per line, whitespace separated, ``#`` starting a
comment line:

* 4 columns: ``claimed_id real_id probe_label score``
* 5 columns: ``claimed_id model_label real_id probe_label score``

A line is genuine when ``claimed_id == real_id``. Imported scores become a table in
``SCORES_SCHEMA``, so every later stage treats them like scores computed here. A score that is
NaN or infinite keeps its row with a status instead of ``ok``, so the metrics skip it and the
count of unscored pairs says how many there were.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from maskbench.io.atomic import write_table, write_text
from maskbench.io.manifests import SCORES_SCHEMA
from maskbench.io.readers import read_aligned

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

BOB_COLUMNS = {
    4: ("claimed_id", "real_id", "probe_label", "score"),
    5: ("claimed_id", "model_label", "real_id", "probe_label", "score"),
}
FORMATS = {"bob4": 4, "bob5": 5, "bob": None, "csv": None}

OK = "ok"
NAN_SCORE = "nan_score"  # the file gives NaN (or nothing) for the pair
INFINITE_SCORE = "infinite_score"  # +-inf: kept, but no metric can use it
MISSING_SCORE = "missing_score"  # a pair of the manifest that the file does not score

# CSV cells read as "no score"
_CSV_NAN = {"", "nan", "na", "n/a", "null", "none"}
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}
_SHOWN = 10  # offending names quoted in an error message


class ScoreFileError(ValueError):
    """A score file that cannot be read or does not match the pairs it should score."""


def _shorten(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _examples(values) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:_SHOWN])
    return shown + (f" and {len(values) - _SHOWN} more" if len(values) > _SHOWN else "")


def score_status(score: float) -> str:
    if math.isnan(score):
        return NAN_SCORE
    if math.isinf(score):
        return INFINITE_SCORE
    return OK


def _score_array(values: list[float], statuses: list[str]) -> pa.Array:
    """Scores as float64, null where the score is NaN (as the score stage leaves unscored pairs)."""
    arr = np.asarray(values, dtype=np.float64)
    nan = np.array([s == NAN_SCORE for s in statuses], dtype=bool)
    return pa.array(np.where(nan, 0.0, arr), type=pa.float64(), mask=nan)


# ---------------------------------------------------------------------------------------------
# Bob


def read_bob(path: str | os.PathLike, columns: int | None = None) -> pa.Table:
    """Lines of a Bob score file: ``line`` (1-based, in the file), ``claimed_id``, ``model_label``
    (null for 4 columns), ``real_id``, ``probe_label``, ``score`` (null when NaN) and ``status``.

    ``columns`` is 4, 5 or None to take it from the first score line; every line must then have
    that many fields. A bad line raises :class:`ScoreFileError` naming the file and line.
    """
    if columns not in (4, 5, None):
        raise ValueError(f"columns must be 4, 5 or None (detect), got {columns!r}")
    path = os.fspath(path)
    rows: dict[str, list] = {name: [] for name in ("line", "claimed_id", "model_label", "real_id",
                                                   "probe_label", "score", "status")}
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ScoreFileError(f"{path}, line {number}: not UTF-8 text ({exc.reason})") from None
            stripped = text.strip()
            if not stripped or stripped.startswith("#"):
                continue
            fields = stripped.split()
            if columns is None:
                if len(fields) not in BOB_COLUMNS:
                    raise ScoreFileError(
                        f"{path}, line {number}: a Bob score line has 4 columns ({' '.join(BOB_COLUMNS[4])}) "
                        f"or 5 ({' '.join(BOB_COLUMNS[5])}); found {len(fields)}: {_shorten(stripped)!r}")
                columns = len(fields)
            elif len(fields) != columns:
                raise ScoreFileError(
                    f"{path}, line {number}: expected {columns} columns ({' '.join(BOB_COLUMNS[columns])}), "
                    f"found {len(fields)}: {_shorten(stripped)!r}")
            try:
                score = float(fields[-1])
            except ValueError:
                raise ScoreFileError(
                    f"{path}, line {number}: the score {_shorten(fields[-1], 40)!r} is not a number") from None
            rows["line"].append(number)
            rows["claimed_id"].append(fields[0])
            rows["model_label"].append(fields[1] if columns == 5 else None)
            rows["real_id"].append(fields[-3])
            rows["probe_label"].append(fields[-2])
            rows["score"].append(score)
            rows["status"].append(score_status(score))
    if not rows["line"]:
        raise ScoreFileError(f"{path} has no score lines (only blank lines or # comments)")
    rows["score"] = _score_array(rows["score"], rows["status"])
    return pa.Table.from_pydict(rows, schema=pa.schema([
        ("line", pa.int64()), ("claimed_id", pa.string()), ("model_label", pa.string()),
        ("real_id", pa.string()), ("probe_label", pa.string()), ("score", pa.float64()),
        ("status", pa.string())]))


def bob_scores_table(lines: pa.Table) -> pa.Table:
    """Bob lines as SCORES_SCHEMA: genuine when claimed_id == real_id, pair ids in line order,
    reference = model_label (5 columns) or claimed_id, probe = probe_label, one fold (0)."""
    n = lines.num_rows
    refs = pc.coalesce(lines["model_label"], lines["claimed_id"])
    return pa.Table.from_pydict(
        {
            "pair_id": np.arange(n, dtype=np.int64),
            "ref_image": refs,
            "probe_image": lines["probe_label"],
            "genuine": pc.equal(lines["claimed_id"], lines["real_id"]),
            "fold": np.zeros(n, dtype=np.int16),
            "score": lines["score"],
            "status": lines["status"],
        },
        schema=SCORES_SCHEMA,
    )


# ---------------------------------------------------------------------------------------------
# CSV


def _csv_float(value: str, path: str, line: int, column: str) -> float:
    if value.strip().lower() in _CSV_NAN:
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise ScoreFileError(f"{path}, line {line}: {column} {_shorten(value, 40)!r} is not a number") from None


def _read_csv(path: str) -> tuple[list[str], list[int], dict[str, list[str]]]:
    """Header, line numbers and columns (stripped text) of a CSV file; blank lines are skipped and
    a row with the wrong number of fields is an error naming its line."""
    lines: list[int] = []
    rows: list[list[str]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, strict=True)
            header = [h.strip() for h in next(reader, [])]
            if not any(header):
                raise ScoreFileError(f"{path} is empty: a CSV score file needs a header and rows")
            for fields in reader:
                if not any(x.strip() for x in fields):
                    continue
                if len(fields) != len(header):
                    raise ScoreFileError(
                        f"{path}, line {reader.line_num}: expected {len(header)} fields "
                        f"({','.join(header)}), found {len(fields)}")
                lines.append(reader.line_num)
                rows.append([x.strip() for x in fields])
    except UnicodeDecodeError as exc:
        raise ScoreFileError(f"{path} is not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise ScoreFileError(f"{path}, line {reader.line_num}: {exc}") from None
    columns = {name: [row[k] for row in rows] for k, name in enumerate(header)}
    return header, lines, columns


def read_csv_scores(path: str | os.PathLike) -> pa.Table:
    """A CSV score file with a header, one of:

    * ``pair_id,score``: pairs of a pairs manifest, by id;
    * ``ref_image,probe_image,score`` and optionally ``genuine`` (true/false, 1/0, yes/no).

    Returns ``line`` (in the file, the header being line 1), the key columns, ``score`` (null when
    empty or NaN), ``genuine`` (null when absent) and ``status``. Other columns are ignored.
    """
    path = os.fspath(path)
    header, lines, columns = _read_csv(path)
    by_id = "pair_id" in columns
    needed = ["pair_id", "score"] if by_id else ["ref_image", "probe_image", "score"]
    absent = [c for c in needed if c not in columns]
    if absent:
        raise ScoreFileError(
            f"{path}: CSV columns {header} lack {absent}; a CSV score file needs "
            "pair_id,score or ref_image,probe_image,score (+ genuine)")
    if not lines:
        raise ScoreFileError(f"{path} has a header but no score rows")
    scores = [_csv_float(v, path, n, "score") for v, n in zip(columns["score"], lines)]
    statuses = [score_status(s) for s in scores]
    data: dict[str, object] = {"line": pa.array(lines, type=pa.int64())}
    if by_id:
        ids = []
        for value, n in zip(columns["pair_id"], lines):
            try:
                ids.append(int(value))
            except ValueError:
                raise ScoreFileError(
                    f"{path}, line {n}: pair_id {_shorten(value, 40)!r} is not an integer") from None
        data["pair_id"] = pa.array(ids, type=pa.int64())
    else:
        for column in ("ref_image", "probe_image"):
            for value, n in zip(columns[column], lines):
                if not value:
                    raise ScoreFileError(f"{path}, line {n}: {column} is empty")
            data[column] = pa.array(columns[column], type=pa.string())
    genuine = [None] * len(lines)
    if "genuine" in columns:
        for k, (value, n) in enumerate(zip(columns["genuine"], lines)):
            word = value.lower()
            if word not in _TRUE | _FALSE:
                raise ScoreFileError(
                    f"{path}, line {n}: genuine {_shorten(value, 40)!r} is not true/false, 1/0 or yes/no")
            genuine[k] = word in _TRUE
    data["genuine"] = pa.array(genuine, type=pa.bool_())
    data["score"] = _score_array(scores, statuses)
    data["status"] = pa.array(statuses, type=pa.string())
    return pa.Table.from_pydict(data)


def _duplicates(frame: pd.DataFrame, keys: list[str], path: str) -> None:
    dup = frame.duplicated(keys, keep=False)
    if dup.any():
        first = frame[dup].drop_duplicates(keys)
        names = [tuple(r) if len(keys) > 1 else r[0] for r in first[keys].itertuples(index=False)]
        raise ScoreFileError(f"{path} scores the same pair twice: {_examples(names)}; keep one line per pair")


def _comparison_pairs(pairs: pa.Table, comparison: str | None) -> pd.DataFrame:
    """The manifest rows of one comparison (``ref-vs-probe``), or all rows when None."""
    frame = pairs.select(["pair_id", "ref_image", "ref_variant", "probe_image", "probe_variant",
                          "genuine", "fold"]).to_pandas()
    if comparison is None:
        variants = frame[["ref_variant", "probe_variant"]].drop_duplicates()
        if len(variants) > 1:
            names = [f"{r}-vs-{p}" for r, p in variants.itertuples(index=False)]
            raise ValueError(f"the pairs manifest holds several comparisons ({_examples(names)}): name the one "
                             "the score file scores")
        return frame
    ref, _, probe = comparison.partition("-vs-")
    if not probe:
        raise ValueError(f"comparison must read '<ref_variant>-vs-<probe_variant>', got {comparison!r}")
    frame = frame[(frame["ref_variant"] == ref) & (frame["probe_variant"] == probe)]
    if frame.empty:
        raise ScoreFileError(f"the pairs manifest has no pairs for {comparison}; re-run the pairs rule")
    return frame


def csv_scores_table(rows: pa.Table, path: str, pairs: pa.Table | None = None,
                     comparison: str | None = None) -> pa.Table:
    """CSV rows as SCORES_SCHEMA.

    With a pairs manifest, every pair of ``comparison`` gets a row in manifest order: the score
    the file gives it (matched by ``pair_id``, or by ``ref_image`` and ``probe_image``), or status
    ``missing_score``; a scored pair the manifest lacks is an error naming it. Without a manifest
    (``ref_image,probe_image,score,genuine`` only) the rows are taken as they are, in file order,
    as one fold.
    """
    frame = rows.to_pandas()
    by_id = "pair_id" in frame.columns
    keys = ["pair_id"] if by_id else ["ref_image", "probe_image"]
    _duplicates(frame, keys, path)
    if pairs is None:
        if by_id:
            raise ScoreFileError(f"{path} names pairs by pair_id: importing it needs the pairs manifest")
        if frame["genuine"].isna().any():
            raise ScoreFileError(
                f"{path} has no genuine column: add one (true/false) or import it with the pairs manifest")
        n = len(frame)
        return pa.Table.from_pydict(
            {"pair_id": np.arange(n, dtype=np.int64), "ref_image": rows["ref_image"],
             "probe_image": rows["probe_image"], "genuine": rows["genuine"],
             "fold": np.zeros(n, dtype=np.int16), "score": rows["score"], "status": rows["status"]},
            schema=SCORES_SCHEMA)
    manifest = _comparison_pairs(pairs, comparison)
    where = f"the pairs of {comparison}" if comparison else "the pairs manifest"
    known = manifest[keys].drop_duplicates()
    unknown = frame.merge(known, on=keys, how="left", indicator=True)
    unknown = unknown[unknown["_merge"] == "left_only"]
    if len(unknown):
        names = [tuple(r) if len(keys) > 1 else r[0] for r in unknown[keys].itertuples(index=False)]
        raise ScoreFileError(
            f"{path} scores {len(unknown)} pair(s) that are not among {where}: {_examples(names)}; "
            "score files must use the manifest's pair ids / image ids")
    scored = frame[keys + ["score", "status"] + ([] if by_id else ["genuine", "line"])]
    merged = manifest.merge(scored, on=keys, how="left", validate="many_to_one", sort=False,
                            suffixes=("", "_file"))
    if not by_id:
        clash = merged["genuine_file"].notna() & (merged["genuine_file"].astype("boolean") != merged["genuine"])
        if clash.any():
            bad = merged[clash].iloc[0]
            raise ScoreFileError(
                f"{path}, line {int(bad['line'])}: pair {bad['ref_image']!r} / {bad['probe_image']!r} is "
                f"marked genuine={bool(bad['genuine_file'])} but the pairs manifest says {bool(bad['genuine'])} "
                f"({int(clash.sum())} such pair(s))")
    missing = merged["status"].isna()
    status = merged["status"].where(~missing, MISSING_SCORE)
    score = merged["score"].to_numpy(dtype=np.float64, na_value=np.nan)
    null = ~np.isfinite(score) & (status.to_numpy() != INFINITE_SCORE)
    return pa.Table.from_pydict(
        {"pair_id": merged["pair_id"].to_numpy(np.int64), "ref_image": merged["ref_image"].tolist(),
         "probe_image": merged["probe_image"].tolist(), "genuine": merged["genuine"].to_numpy(bool),
         "fold": merged["fold"].to_numpy(np.int16),
         "score": pa.array(np.where(null, 0.0, score), mask=null), "status": status.tolist()},
        schema=SCORES_SCHEMA)


# ---------------------------------------------------------------------------------------------
# import and export


def import_scores(path: str | os.PathLike, fmt: str, pairs_table: pa.Table | str | None = None,
                  comparison: str | None = None) -> pa.Table:
    """A score file made elsewhere as a table in SCORES_SCHEMA.

    ``fmt``: ``bob4``, ``bob5``, ``bob`` (4 or 5 columns, detected) or ``csv``. Bob files carry
    their own labels (genuine when claimed_id == real_id); a CSV file is matched to the rows of
    ``comparison`` in ``pairs_table`` (a PAIRS_SCHEMA table or its Parquet path).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown score file format {fmt!r}; use one of {sorted(FORMATS)}")
    path = os.fspath(path)
    if isinstance(pairs_table, (str, os.PathLike)):
        pairs_table = pq.read_table(pairs_table)
    if fmt == "csv":
        table = csv_scores_table(read_csv_scores(path), path, pairs_table, comparison)
    else:
        if pairs_table is not None:
            raise ValueError(f"{fmt} files carry their own pair labels: pass no pairs manifest")
        table = bob_scores_table(read_bob(path, FORMATS[fmt]))
    return table


def import_score_file(path: str, fmt: str, out_path: str, pairs_path: str | None = None,
                      comparison: str | None = None) -> dict[str, int]:
    """Import one score file and write it as a scores Parquet file; returns counts per status."""
    table = import_scores(path, fmt, pairs_path, comparison)
    write_table(out_path, table)
    counts = {"pairs": table.num_rows, **dict(sorted(Counter(table["status"].to_pylist()).items()))}
    log.info("%s (%s): %s", path, fmt, counts)
    return counts


def format_score(score: float) -> str:
    """The shortest text that reads back as the same float64 (``repr``), so files round-trip."""
    return repr(float(score))


def _check_field(value: str, what: str, first: bool) -> None:
    if not value or any(c.isspace() for c in value):
        raise ScoreFileError(f"{what} {value!r} is empty or holds whitespace, which Bob's format cannot hold")
    if first and value.startswith("#"):
        raise ScoreFileError(f"{what} {value!r} starts with '#': Bob's readers would skip the line as a comment")


def _bob_lines(scores: pa.Table | str, identities: dict[str, str | None], columns: int) -> tuple[str, dict]:
    if isinstance(scores, (str, os.PathLike)):
        scores = pq.read_table(scores)
    frame = scores.select(["ref_image", "probe_image", "genuine", "score", "status"]).to_pandas()
    score = frame["score"].to_numpy(dtype=np.float64, na_value=np.nan)
    keep = (frame["status"].to_numpy() == OK) & np.isfinite(score)
    skipped = Counter(frame.loc[~keep, "status"].tolist())
    kept = frame[keep]
    import pandas as pd  # here: the metrics read score files without pandas

    images = pd.unique(pd.concat([kept["ref_image"], kept["probe_image"]]))
    unknown = [i for i in images if i not in identities]
    if unknown:
        raise ScoreFileError(
            f"{len(unknown)} image(s) of the scores have no identity in the aligned shards given: "
            f"{_examples(unknown)}; pass the shards of the dataset the scores come from")
    nameless = [i for i in images if identities[i] is None]
    if nameless:
        raise ScoreFileError(
            f"{len(nameless)} image(s) have no identity ({_examples(nameless)}); Bob's format needs "
            "claimed and real identities")
    claimed = kept["ref_image"].map(identities)
    real = kept["probe_image"].map(identities)
    wrong = (claimed == real).to_numpy() != kept["genuine"].to_numpy(bool)
    if wrong.any():
        bad = kept[wrong].iloc[0]
        raise ScoreFileError(
            f"{int(wrong.sum())} pair(s) have a genuine flag that disagrees with their identities, e.g. "
            f"{bad['ref_image']!r} / {bad['probe_image']!r} (genuine={bool(bad['genuine'])}); the scores "
            "and aligned shards are of different datasets")
    for name in sorted({identities[i] for i in images}):
        _check_field(name, "identity", first=True)
    for image in kept["probe_image"].unique():
        _check_field(image, "probe image id", False)
    if columns == 5:
        for image in kept["ref_image"].unique():
            _check_field(image, "reference image id", False)
    fields = [claimed.tolist()]
    if columns == 5:
        fields.append(kept["ref_image"].tolist())
    fields += [real.tolist(), kept["probe_image"].tolist(), [format_score(s) for s in score[keep]]]
    text = "".join(" ".join(row) + "\n" for row in zip(*fields))
    counts = {"written": int(keep.sum()), "skipped": int((~keep).sum()),
              "skipped_by_status": dict(sorted(skipped.items()))}
    return text, counts


def export_bob4(scores_table: pa.Table | str, path: str | os.PathLike,
                identities: dict[str, str | None]) -> dict:
    """Write scores as Bob's ``claimed_id real_id probe_label score`` lines, in pair order.

    ``identities`` maps image ids to identities (see :func:`maskbench.io.readers.read_aligned`): the claimed id is
    the reference image's identity and the real id the probe's. Rows without a usable score
    (status other than ``ok``) are left out and counted: ``{"written", "skipped",
    "skipped_by_status"}``.
    """
    text, counts = _bob_lines(scores_table, identities, 4)
    write_text(path, text)
    return counts


def export_bob5(scores_table: pa.Table | str, path: str | os.PathLike,
                identities: dict[str, str | None]) -> dict:
    """As :func:`export_bob4` with the reference image id as Bob's model label:
    ``claimed_id model_label real_id probe_label score``."""
    text, counts = _bob_lines(scores_table, identities, 5)
    write_text(path, text)
    return counts


def export_score_file(scores_path: str, aligned_paths: list[str], out_path: str, columns: int = 4) -> dict:
    """Export one scores Parquet file in Bob's 4- or 5-column format; returns the counts."""
    if columns not in BOB_COLUMNS:
        raise ValueError(f"columns must be 4 or 5, got {columns!r}")
    export = export_bob4 if columns == 4 else export_bob5
    counts = export(scores_path, out_path, read_aligned(aligned_paths).identity)
    if counts["skipped"]:
        log.warning("%s: %d pair(s) without a score left out: %s", scores_path, counts["skipped"],
                    counts["skipped_by_status"])
    log.info("%s -> %s: %d lines", scores_path, out_path, counts["written"])
    return counts


class ScoredPairs:
    """Every pair of a score file as numpy columns: ``score`` (float64, NaN where null),
    ``genuine`` (bool), ``fold`` and ``scored`` (bool: status ``ok``; False for a pair without a
    score, a side failed to enrol, which a decision rule rejects as NIST counts it: a genuine one a
    false non-match, an impostor one a correct rejection). Read without pandas."""

    def __init__(self, score: np.ndarray, genuine: np.ndarray, fold: np.ndarray, scored: np.ndarray):
        self.score, self.genuine, self.fold, self.scored = score, genuine, fold, scored

    def __len__(self) -> int:
        return self.score.size

    def where(self, mask: np.ndarray) -> "ScoredPairs":
        """The pairs where ``mask`` is True, in file order."""
        return ScoredPairs(self.score[mask], self.genuine[mask], self.fold[mask], self.scored[mask])


def read_with_ok(path: str, columns: list[str]) -> tuple[pa.Table, np.ndarray]:
    """``columns`` of a score file, and whether each pair's status is ``ok``: the status is read
    as the file stores it, dictionary-encoded, so its few distinct strings are compared, not one
    string per pair."""
    # ParquetFile, not read_table: read_table goes through pyarrow.dataset, an import one file does not need
    table = pq.ParquetFile(path, read_dictionary=["status"]).read(columns=[*columns, "status"])
    ok = [pc.fill_null(pc.equal(chunk.dictionary, OK).take(chunk.indices), False).to_numpy(zero_copy_only=False)
          for chunk in table["status"].chunks]  # a null status is not ok
    return table, np.concatenate(ok) if ok else np.zeros(0, dtype=bool)


def read_scored_pairs(path: str) -> ScoredPairs:
    """Every pair of a score file (see :class:`ScoredPairs`)."""
    table, ok = read_with_ok(path, ["score", "genuine", "fold"])
    return ScoredPairs(table["score"].to_numpy(), table["genuine"].to_numpy(), table["fold"].to_numpy(), ok)


def read_scores(path: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Genuine and impostor scores of the scored pairs, and how many pairs had no score."""
    table, ok = read_with_ok(path, ["score", "genuine"])
    score, genuine = table["score"].to_numpy(), table["genuine"].to_numpy()
    return score[ok & genuine], score[ok & ~genuine], int((~ok).sum())
