"""Verification metrics per demographic group (sex, race, age group): whom a system fails.

Which pairs make a group (NIST FRVT Part 3, Grother, Ngan & Hanaoka, NISTIR 8280, 2019):

* A pair belongs to a group when **both** its images do. Genuine pairs of a person whose
  attribute does not change belong to that person's group; impostor pairs are **same-group
  impostors**, NIST's demographic convention (a false match between two people who share sex,
  race or age is the one a deployed system meets, and the harder one).
* Pairs whose images fall in two different groups (impostors across groups; genuine pairs whose
  images differ, e.g. in age group) belong to no group. They are counted in a row of their own,
  ``across_groups``, so every pair is accounted for.
* A pair with an image whose attribute is missing from the index (an image without annotation)
  belongs to the group ``unknown``: counted, never silently dropped.

Per group, the same core metrics as for the whole comparison, on the group's pairs: EER, ROC AUC,
FNMR at FMR 1e-2 and 1e-3 (``None`` - shown as ``n/a`` - when the group has fewer than
``1 / target`` impostor pairs, as in :func:`maskbench.evaluation.metrics.fnmr_at_fmr`), and the counts.
As for the whole comparison, a pair that failed to enrol counts in every FNMR and FMR as NIST
counts it (a genuine one a non-match at every threshold, an impostor one a correct rejection) and
in ``eer_with_fte``; ``eer`` and ``auc`` are over the scored pairs. A group whose photos fail more
often therefore shows it.
Because a per-group threshold hides differences a real system shows, FNMR and FMR are also given
at **one threshold for everybody**:

* ``global_*``: the threshold at which all impostor pairs of the comparison (every group, and
  across groups) reach the target FMR; FRVT's demographic FMR and FNMR at a fixed threshold.
* ``nist_*`` (masked probes, with the unmasked-vs-unmasked scores as baseline): the threshold
  fixed on all unmasked impostor pairs (NISTIR 8311), so the per-group rates show who starts to
  fail when people put masks on and the threshold stays as it was.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from maskbench.config import GROUP_COLUMNS
from maskbench.evaluation import metrics
from maskbench.attributes.labels import DEFAULT_AGE_GROUPS, age_group, task_classes
from maskbench.evaluation.metrics import fmr_key  # the names of the whole-comparison metrics file

log = logging.getLogger(__name__)

CORE_FMR = (1e-2, 1e-3)
UNKNOWN = "unknown"
ACROSS_GROUPS = "across_groups"

OK = "ok"
NO_GENUINE = "no genuine pairs"
NO_IMPOSTOR = "no impostor pairs"
NO_SCORES = "no scored pairs"
NO_SCORED_GENUINE = "every genuine pair failed to enrol"
NO_SCORED_IMPOSTOR = "every impostor pair failed to enrol"
ALL_FAILED = "every pair failed to enrol"
EXCLUDED = "excluded: across groups (NIST FRVT same-group impostors)"


# ----------------------------------------------------------------------------------------------
# which group each pair is in


def image_groups(index: pd.DataFrame, attribute: str,
                 age_bounds: Sequence[int] = DEFAULT_AGE_GROUPS) -> pd.Series:
    """image_id -> group label of ``attribute`` (None where the index has no value)."""
    if attribute not in GROUP_COLUMNS:
        raise ValueError(f"unknown group attribute {attribute!r}; known: {sorted(GROUP_COLUMNS)}")
    column = GROUP_COLUMNS[attribute]
    if column not in index.columns:
        raise ValueError(f"the index has no {column!r} column, needed to group by {attribute!r}")
    values = index[column]
    if attribute == "age_group":
        known = values.notna()
        labels = {a: age_group(a, age_bounds) for a in pd.unique(values[known])}  # few distinct ages
        values = values.where(~known, values.map(labels))
    else:
        values = values.where(values.notna() & (values.astype(str) != ""), None)
    return pd.Series(values.to_numpy(object), index=index["image_id"].to_numpy(), dtype=object)


def pair_groups(ref_images: Sequence[str], probe_images: Sequence[str], groups: pd.Series) -> np.ndarray:
    """Each pair's group: the label both images share, :data:`UNKNOWN` when either image has no
    label (or is not in the index), :data:`ACROSS_GROUPS` when their labels differ."""
    if not groups.index.is_unique:
        raise ValueError("the index lists some image_id twice; rebuild it")
    labels = pd.Index(pd.unique(groups.dropna()))
    code = np.full(len(groups) + 1, -1, dtype=np.int64)  # last slot: an image absent from the index
    known = groups.notna().to_numpy()
    code[:-1][known] = labels.get_indexer(groups[known])
    ref = code[groups.index.get_indexer(np.asarray(ref_images, dtype=object))]
    probe = code[groups.index.get_indexer(np.asarray(probe_images, dtype=object))]
    out = np.full(ref.size, ACROSS_GROUPS, dtype=object)
    same = ref == probe
    out[same] = labels.to_numpy(object)[np.maximum(ref[same], 0)]
    out[(ref < 0) | (probe < 0)] = UNKNOWN
    return out


def group_order(attribute: str, present, age_bounds: Sequence[int] = DEFAULT_AGE_GROUPS) -> list[str]:
    """Groups in their natural order (classes as listed, age groups by age), others sorted, then
    ``unknown``; :data:`ACROSS_GROUPS` is left out."""
    present = set(present) - {ACROSS_GROUPS}
    known = [g for g in task_classes(attribute, age_bounds) if g in present]
    other = sorted(present - set(known) - {UNKNOWN})
    return known + other + ([UNKNOWN] if UNKNOWN in present else [])


# ----------------------------------------------------------------------------------------------
# metrics of one group


def _value(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _status(n_genuine: int, n_impostor: int, fte_genuine: int = 0, fte_impostor: int = 0) -> str:
    if not n_genuine and not n_impostor:
        return ALL_FAILED if fte_genuine or fte_impostor else NO_SCORES
    if not n_genuine:
        return NO_SCORED_GENUINE if fte_genuine else NO_GENUINE
    if not n_impostor:
        return NO_SCORED_IMPOSTOR if fte_impostor else NO_IMPOSTOR
    return OK


def core_metrics(genuine: np.ndarray, impostor: np.ndarray, fte_genuine: int = 0,
                 fte_impostor: int = 0) -> dict[str, Any]:
    """EER, AUC (scored pairs), EER with failures to enrol and FNMR at FMR 1e-2 / 1e-3 (failures
    counted) of one group; ``None`` where a class is empty (the status says which) or a target
    needs more impostor pairs than the group has."""
    out: dict[str, Any] = {"status": _status(genuine.size, impostor.size, fte_genuine, fte_impostor),
                           "n_genuine": int(genuine.size), "n_impostor": int(impostor.size),
                           "n_failure_to_enrol_genuine": int(fte_genuine),
                           "n_failure_to_enrol_impostor": int(fte_impostor)}
    both = genuine.size and impostor.size
    out["eer"] = _value(metrics.eer(genuine, impostor).eer) if both else None
    out["auc"] = _value(metrics.roc_auc(genuine, impostor)) if both else None
    gen_fte, imp_fte = metrics.with_failures_to_enrol(genuine, impostor, fte_genuine, fte_impostor)
    with_fte = gen_fte.size and imp_fte.size
    out["eer_with_fte"] = _value(metrics.eer(gen_fte, imp_fte).eer) if with_fte else None
    points = metrics.fnmr_at_fmr_many(gen_fte, imp_fte, CORE_FMR) if with_fte else [None] * len(CORE_FMR)
    for target, point in zip(CORE_FMR, points):
        measurable = bool(imp_fte.size) and 1.0 / imp_fte.size <= target
        out[fmr_key(target)] = _value(point.fnmr) if point is not None and measurable else None
        out[f"{fmr_key(target)}_measurable"] = measurable
    return out


def rates_at(genuine: np.ndarray, impostor: np.ndarray, threshold: float, fte_genuine: int = 0,
             fte_impostor: int = 0) -> tuple[float | None, float | None]:
    """(FMR, FNMR) at a threshold fixed elsewhere (ties accepted), a pair that failed to enrol
    rejected; ``None`` for an empty class."""
    return metrics.rates_with_failures(genuine, impostor, threshold, fte_genuine, fte_impostor)


def fixed_thresholds(genuine: np.ndarray, impostor: np.ndarray, targets: Sequence[float],
                     base_impostor: np.ndarray | None = None) -> dict[str, tuple[float, bool, float]]:
    """Thresholds shared by every group: ``global_*`` on all impostor pairs of the comparison;
    ``nist_*`` on all unmasked impostor pairs (when ``base_impostor`` is given). Each is
    ``(threshold, measurable, target FMR)``."""
    out = {}
    for point in metrics.fnmr_at_fmr_many(genuine, impostor, targets):
        out[f"global_{fmr_key(point.target_fmr)}"] = (point.threshold, point.measurable, point.target_fmr)
    if base_impostor is not None:
        for target in targets:
            threshold, measurable = metrics.nist_threshold(base_impostor, target)
            out[f"nist_{fmr_key(target)}"] = (threshold, measurable, target)
    return out


def fixed_threshold_metrics(genuine: np.ndarray, impostor: np.ndarray,
                            thresholds: dict[str, tuple[float, bool, float]], fte_genuine: int = 0,
                            fte_impostor: int = 0) -> dict[str, float | None]:
    """``<key>`` (FNMR) and ``<key>_fmr`` of one group at each shared threshold; the group's FMR
    only where it has at least ``1 / target`` impostor pairs (fewer cannot show a rate that low)."""
    out = {}
    for key, (threshold, measurable, target) in thresholds.items():
        fmr, fnmr = rates_at(genuine, impostor, threshold, fte_genuine, fte_impostor) if measurable else (None, None)
        if target > 0 and impostor.size + fte_impostor < 1.0 / target:
            fmr = None
        out[key], out[f"{key}_fmr"] = fnmr, fmr
    return out


# ----------------------------------------------------------------------------------------------
# every group of every attribute


def read_index(index_path: str) -> pd.DataFrame:
    return pq.read_table(index_path, columns=["image_id", *sorted(set(GROUP_COLUMNS.values()))]).to_pandas()


def read_pairs(scores_path: str) -> pd.DataFrame:
    return pq.read_table(scores_path, columns=["ref_image", "probe_image", "genuine", "score", "status"]).to_pandas()


def metrics_by_group(pairs: pd.DataFrame, index: pd.DataFrame, attributes: Sequence[str],
                     age_bounds: Sequence[int] = DEFAULT_AGE_GROUPS, targets: Sequence[float] = CORE_FMR,
                     base_impostor: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per (attribute, group), in the order of ``attributes`` and :func:`group_order`,
    then an :data:`ACROSS_GROUPS` row per attribute with the counts of the pairs in no group.

    ``pairs``: ``ref_image``, ``probe_image``, ``genuine``, ``score`` and ``status`` (``ok`` when
    scored) per pair. ``targets``: FMR targets of the shared thresholds (see the module notes);
    ``base_impostor``: the unmasked impostor scores fixing the ``nist_*`` threshold.
    """
    scored = (pairs["status"] == "ok").to_numpy()
    genuine_mask = pairs["genuine"].to_numpy(bool)
    score = pairs["score"].to_numpy(np.float64)
    all_gen, all_imp = score[scored & genuine_mask], score[scored & ~genuine_mask]
    # the comparison's own thresholds: set with its failures to enrol, as the metrics file's
    all_gen, all_imp = metrics.with_failures_to_enrol(all_gen, all_imp, int((~scored & genuine_mask).sum()),
                                                      int((~scored & ~genuine_mask).sum()))
    thresholds = fixed_thresholds(all_gen, all_imp, targets, base_impostor) if all_gen.size and all_imp.size else {}
    images = pd.Index(pd.unique(pd.concat([pairs["ref_image"], pairs["probe_image"]])))
    missing = int((~images.isin(index["image_id"])).sum())
    if missing:
        log.warning("%d image(s) of the scores are not in the index: their pairs count as %r", missing, UNKNOWN)
    rows = []
    for attribute in attributes:
        groups = image_groups(index, attribute, age_bounds)
        of_pair = pair_groups(pairs["ref_image"], pairs["probe_image"], groups)
        for group in group_order(attribute, pd.unique(of_pair), age_bounds):
            member = of_pair == group
            gen = score[member & scored & genuine_mask]
            imp = score[member & scored & ~genuine_mask]
            fte_gen, fte_imp = int((member & ~scored & genuine_mask).sum()), int((member & ~scored & ~genuine_mask).sum())
            row = {"attribute": attribute, "group": group, **core_metrics(gen, imp, fte_gen, fte_imp),
                   "n_unscored": fte_gen + fte_imp}
            row.update(fixed_threshold_metrics(gen, imp, thresholds, fte_gen, fte_imp))
            rows.append(row)
        across = of_pair == ACROSS_GROUPS
        rows.append({"attribute": attribute, "group": ACROSS_GROUPS, "status": EXCLUDED,
                     "n_genuine": int((across & scored & genuine_mask).sum()),
                     "n_impostor": int((across & scored & ~genuine_mask).sum()),
                     "n_unscored": int((across & ~scored).sum())})
    return rows


def group_metrics_of_file(scores_path: str, index_path: str, attributes: Sequence[str],
                          age_bounds: Sequence[int] = DEFAULT_AGE_GROUPS, targets: Sequence[float] = CORE_FMR,
                          base_impostor: np.ndarray | None = None) -> list[dict[str, Any]]:
    """:func:`metrics_by_group` of a score file and its dataset's index."""
    return metrics_by_group(read_pairs(scores_path), read_index(index_path), attributes, age_bounds,
                            targets, base_impostor)


# ----------------------------------------------------------------------------------------------
# the long table

KEY_COLUMNS = ["dataset", "model", "protocol", "ref_variant", "probe_variant", "attribute", "group"]
NOT_AVAILABLE = "n/a"


def by_group_table(entries: Sequence[dict[str, str]]) -> pd.DataFrame:
    """One row per (dataset, model, protocol, ref_variant, probe_variant, attribute, group) from
    the ``by_group`` rows of each metrics file in ``entries`` (dataset, model, protocol,
    comparison, path). A metric that could not be measured (empty class, too few impostor pairs,
    not applicable) is ``n/a``; the status column says why for a whole row."""
    rows = []
    for e in entries:
        with open(e["path"], encoding="utf-8") as f:
            values = json.load(f)
        if "by_group" not in values:
            raise ValueError(f"{e['path']} has no by_group entry: its dataset {e['dataset']!r} needs `group_by`")
        ref, probe = e["comparison"].split("-vs-")
        for row in values["by_group"]:
            shown = {k: v for k, v in row.items() if not k.endswith("_measurable")}
            rows.append({"dataset": e["dataset"], "model": e["model"], "protocol": e["protocol"],
                         "ref_variant": ref, "probe_variant": probe, **shown})
    if not rows:
        return pd.DataFrame(columns=KEY_COLUMNS)
    frame = pd.DataFrame(rows)
    counts = ["n_genuine", "n_impostor", "n_unscored", "n_failure_to_enrol_genuine", "n_failure_to_enrol_impostor"]
    own = ["eer", "auc", "eer_with_fte", *(fmr_key(t) for t in CORE_FMR)]  # the group's own metrics first
    measured = own + sorted(set(frame.columns) - set(KEY_COLUMNS + counts + own + ["status"]))
    frame = frame.reindex(columns=KEY_COLUMNS + ["status"] + counts + measured)
    frame[measured] = frame[measured].astype(object).where(frame[measured].notna(), NOT_AVAILABLE)
    return frame.sort_values(["dataset", "protocol", "ref_variant", "probe_variant", "model"], kind="stable")
