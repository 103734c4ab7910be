"""The realism table: do synthetic masks predict what real masks do?

Per dataset with photos of real masks and per model, the verification metrics of unmasked
reference vs real-masked probe sit beside those of unmasked reference vs each synthetic mask type
on the same people (see maskbench.protocols.variant_pools), with their bootstrap intervals and the
difference synthetic minus real. A synthetic type whose difference is near zero predicts real
masks well; a negative difference means it understates the damage real masks do.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np
import pandas as pd

from maskbench.evaluation import metrics
from maskbench.io.manifests import REAL_VARIANT

REAL_COMPARISON = f"unmasked-vs-{REAL_VARIANT}"
FNMR_KEY = "fnmr_at_fmr_1e-2"
# values copied from each comparison's metrics file; the EER is over scored pairs, the FNMR and
# eer_with_fte count pairs that failed to enrol (no face found to mask, no chip) as NIST does
METRIC_COLUMNS = ["n_genuine", "n_impostor", "n_failure_to_enrol_genuine", "n_failure_to_enrol_impostor",
                  "eer", "eer_ci_low", "eer_ci_high", "eer_with_fte",
                  FNMR_KEY, f"{FNMR_KEY}_ci_low", f"{FNMR_KEY}_ci_high"]
COLUMNS = ["dataset", "model", "protocol", "probe", *METRIC_COLUMNS,
           "eer_minus_real", "eer_minus_real_ci_low", "eer_minus_real_ci_high", "eer_with_fte_minus_real",
           f"{FNMR_KEY}_minus_real", "closest_to_real"]


def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _scored_pairs(path: str, identity: dict[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(score, genuine, person of the reference image) of a score file's scored pairs."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["ref_image", "genuine", "score", "status"]).to_pandas()
    table = table[table["status"] == "ok"]
    person = table["ref_image"].map(identity)
    if person.isna().any():
        raise ValueError(f"{path}: reference image {table['ref_image'][person.isna()].iloc[0]!r} is not in the "
                         "dataset's index")
    return (table["score"].to_numpy(np.float64), table["genuine"].to_numpy(bool),
            person.to_numpy(dtype=object))


_MAX_REDRAWS = 1000


def difference_ci(real: tuple[np.ndarray, np.ndarray, np.ndarray], synthetic: tuple[np.ndarray, np.ndarray, np.ndarray],
                  n_boot: int, alpha: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of EER(synthetic) - EER(real), resampling reference people.

    ``real`` and ``synthetic``: (score, genuine, reference person) per scored pair. A person's
    photos sit in many pairs, and the two comparisons are of the same people, so each resample
    draws the people once, with replacement, for both comparisons, and a pair counts as often as
    its reference person was drawn (resampling pairs alone gives too narrow an interval; an
    impostor pair's probe person is not resampled apart). A draw that leaves one side without
    genuine or impostor pairs is drawn again."""
    rng = np.random.default_rng(seed)
    people, codes = np.unique(np.concatenate([real[2], synthetic[2]]).astype(str), return_inverse=True)
    sides = []
    for (score, genuine, _), code in ((real, codes[:real[0].size]), (synthetic, codes[real[0].size:])):
        parts = []
        for mask in (genuine, ~genuine):  # genuine, impostor: each sorted once, with its people
            order = np.argsort(score[mask], kind="stable")
            parts.append((score[mask][order], code[mask][order]))
        sides.append(parts)
    values = np.empty(int(n_boot))
    for b in range(values.size):
        for _ in range(_MAX_REDRAWS):  # a draw without the people of one side's genuine (or impostor) pairs
            drawn = np.bincount(rng.integers(0, people.size, people.size), minlength=people.size)
            if all(drawn[c].any() for side in sides for _, c in side):
                break
        else:
            raise ValueError(f"realism: {_MAX_REDRAWS} draws of {people.size} people in a row left one "
                             "comparison without genuine or impostor pairs; too few people for a bootstrap")
        eers = [metrics.eer(*(np.repeat(s, drawn[c]) for s, c in side)).eer for side in sides]
        values[b] = eers[1] - eers[0]
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _identities(index_path: str) -> dict[str, str]:
    """image_id -> identity from a dataset's index."""
    import pyarrow.parquet as pq

    table = pq.read_table(index_path, columns=["image_id", "identity"])
    return dict(zip(table["image_id"].to_pylist(), table["identity"].to_pylist()))


def _minus(a: Any, b: Any) -> float | None:
    return None if a is None or b is None else float(a) - float(b)


def realism_rows(entries: Sequence[dict[str, str]], evaluation: dict | None = None) -> pd.DataFrame:
    """One row per (dataset, model, probe variant) from metrics files.

    ``entries``: dicts with dataset, model, protocol, comparison (``unmasked-vs-real`` or
    ``unmasked-vs-<mask>``), metrics (the metrics JSON), scores (its score file) and index (the
    dataset's index: people), the last two for the interval of the difference
    (``evaluation.bootstrap`` resamples, 0 = none).
    """
    evaluation = evaluation or {}
    n_boot, alpha, seed = evaluation.get("bootstrap", 0), evaluation.get("alpha", 0.05), evaluation.get("seed", 0)
    by_cell: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    for e in entries:
        by_cell.setdefault((e["dataset"], e["model"], e["protocol"]), []).append(e)
    rows = []
    identities: dict[str, dict[str, str]] = {}  # index path -> image -> person, read once per dataset
    for (dataset, model, protocol), cell in by_cell.items():
        real_entry = next((e for e in cell if e["comparison"] == REAL_COMPARISON), None)
        if real_entry is None:
            raise ValueError(f"realism: {dataset}/{model}/{protocol} has no {REAL_COMPARISON} metrics")
        real = _load(real_entry["metrics"])
        if n_boot and real_entry["index"] not in identities:
            identities[real_entry["index"]] = _identities(real_entry["index"])
        identity = identities.get(real_entry["index"], {})
        real_scores = _scored_pairs(real_entry["scores"], identity) if n_boot else None
        ordered = [real_entry] + [e for e in cell if e is not real_entry]
        group = []
        for e in ordered:
            values = real if e is real_entry else _load(e["metrics"])
            row = {"dataset": dataset, "model": model, "protocol": protocol,
                   "probe": e["comparison"].split("-vs-", 1)[1],
                   **{k: values.get(k) for k in METRIC_COLUMNS}}
            if e is not real_entry:
                row["eer_minus_real"] = _minus(values.get("eer"), real.get("eer"))
                row["eer_with_fte_minus_real"] = _minus(values.get("eer_with_fte"), real.get("eer_with_fte"))
                row[f"{FNMR_KEY}_minus_real"] = _minus(values.get(FNMR_KEY), real.get(FNMR_KEY))
                if n_boot and row["eer_minus_real"] is not None:  # both EERs defined (scored pairs of each kind)
                    row["eer_minus_real_ci_low"], row["eer_minus_real_ci_high"] = difference_ci(
                        real_scores, _scored_pairs(e["scores"], identity), n_boot, alpha, seed)
            group.append(row)
        synthetic = [r for r in group[1:] if r.get("eer_minus_real") is not None]
        if synthetic:
            best = min(synthetic, key=lambda r: (abs(r["eer_minus_real"]), r["probe"]))
            best["closest_to_real"] = True
        for r in group:
            r.setdefault("closest_to_real", False)
        rows.extend(group)
    return pd.DataFrame(rows, columns=COLUMNS)


BY_TYPE_COLUMNS = ["dataset", "model", "protocol", "real_mask_type", "n_genuine", "n_impostor",
                   "n_failure_to_enrol_genuine", "n_failure_to_enrol_impostor", "eer", "eer_ci_low", "eer_ci_high",
                   FNMR_KEY]


def by_type_rows(entries: Sequence[dict[str, str]], types: dict[str, dict[str, str]],
                 evaluation: dict | None = None) -> pd.DataFrame:
    """unmasked -> real per kind of real mask (MFR2's labels): for each type, the genuine and
    impostor pairs whose real-masked probe wears it, from the ``unmasked-vs-real`` score files.

    ``types``: dataset -> (image_id -> mask type); datasets without labels are left out. As in
    the realism table, the EER is over scored pairs and the FNMR counts pairs that failed to enrol."""
    import pyarrow.parquet as pq

    evaluation = evaluation or {}
    n_boot, alpha, seed = evaluation.get("bootstrap", 0), evaluation.get("alpha", 0.05), evaluation.get("seed", 0)
    rows = []
    for e in entries:
        if e["comparison"] != REAL_COMPARISON or e["dataset"] not in types:
            continue
        every = pq.read_table(e["scores"], columns=["probe_image", "genuine", "score", "status"]).to_pandas()
        every_kind = every["probe_image"].map(types[e["dataset"]])
        for kind in sorted(every_kind.dropna().unique()):
            mine = every[every_kind == kind]
            part = mine[mine["status"] == "ok"]
            failed = mine[mine["status"] != "ok"]
            gen = part.loc[part["genuine"], "score"].to_numpy(np.float64)
            imp = part.loc[~part["genuine"], "score"].to_numpy(np.float64)
            fte_gen, fte_imp = int(failed["genuine"].sum()), int((~failed["genuine"]).sum())
            row = {"dataset": e["dataset"], "model": e["model"], "protocol": e["protocol"], "real_mask_type": kind,
                   "n_genuine": int(gen.size), "n_impostor": int(imp.size),
                   "n_failure_to_enrol_genuine": fte_gen, "n_failure_to_enrol_impostor": fte_imp}
            if imp.size and (gen.size or fte_gen):  # failures count: a type whose every probe failed has FNMR 1
                point = metrics.fnmr_at_fmr(*metrics.with_failures_to_enrol(gen, imp, fte_gen, fte_imp), 1e-2)
                row[FNMR_KEY] = point.fnmr if point.measurable else None
            if gen.size and imp.size:
                row["eer"] = metrics.eer(gen, imp).eer
                if n_boot:
                    row["eer_ci_low"], row["eer_ci_high"] = metrics.bootstrap_ci(
                        gen, imp, lambda g, i: metrics.eer(g, i).eer, n_boot, alpha, seed)
            rows.append(row)
    return pd.DataFrame(rows, columns=BY_TYPE_COLUMNS)


def realism_figure(frame: pd.DataFrame, png_path: str) -> None:
    """EER with its interval per probe variant, real-masked probes first and drawn apart; one
    panel per dataset, one marker per model. Written as PNG and PDF."""
    from maskbench.reporting.figure_files import plt, save_figure

    datasets = list(dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(1, max(len(datasets), 1), figsize=(5 * max(len(datasets), 1), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        part = frame[frame["dataset"] == dataset]
        probes = list(dict.fromkeys(part["probe"]))
        models = list(dict.fromkeys(part["model"]))
        for k, model in enumerate(models):
            rows = part[part["model"] == model].set_index("probe").reindex(probes)
            x = np.arange(len(probes)) + (k - (len(models) - 1) / 2) * 0.15
            eer = rows["eer"].astype(float).to_numpy()
            low = rows["eer_ci_low"].astype(float).to_numpy()
            high = rows["eer_ci_high"].astype(float).to_numpy()
            err = np.vstack([np.nan_to_num(eer - low), np.nan_to_num(high - eer)])
            ax.errorbar(x, eer, yerr=err, fmt="o", capsize=3, label=model)
        real_eer = part[part["probe"] == REAL_VARIANT]["eer"].astype(float)
        for value in real_eer:
            ax.axhline(value, color="grey", lw=0.8, ls="--")
        ax.axvspan(-0.5, 0.5, color="0.92", zorder=0)
        ax.set_xticks(range(len(probes)), probes, rotation=30, ha="right")
        ax.set_xlim(-0.5, len(probes) - 0.5)
        ax.set_ylabel("EER, unmasked reference vs probe")
        ax.set_title(f"{dataset}: real vs synthetic masks")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, png_path)
