"""The metrics stage: every verification metric of one score file, as JSON."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow.parquet as pq

from maskbench import metrics
from maskbench.atomic import write_json

log = logging.getLogger(__name__)

FMR_TARGETS = (1e-2, 1e-3, 1e-4, 1e-5, 0.0)


def fmr_key(target: float) -> str:
    return "fnmr_at_fmr_0" if target == 0 else f"fnmr_at_fmr_{target:.0e}".replace("e-0", "e-")


def read_scores(path: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Genuine and impostor scores of the scored pairs, and how many pairs had no score."""
    table = pq.read_table(path, columns=["score", "genuine", "status"]).to_pandas()
    ok = table["status"] == "ok"
    scored = table[ok]
    genuine = scored.loc[scored["genuine"], "score"].to_numpy(np.float64)
    impostor = scored.loc[~scored["genuine"], "score"].to_numpy(np.float64)
    return genuine, impostor, int((~ok).sum())


def _value(x: float | None) -> float | None:
    """A JSON-safe float: exact (thresholds must round-trip), None where not finite."""
    return None if x is None or not np.isfinite(x) else float(x)


def compute_metrics(scores_path: str) -> dict:
    genuine, impostor, unscored = read_scores(scores_path)
    eer = metrics.eer(genuine, impostor)
    out = {
        "n_genuine": int(genuine.size),
        "n_impostor": int(impostor.size),
        "n_unscored": unscored,
        "eer": _value(eer.eer),
        "eer_threshold": _value(eer.threshold),
        "eer_rocch": _value(metrics.eer_convex_hull(genuine, impostor)),
        "auc": _value(metrics.roc_auc(genuine, impostor)),
        "d_prime": _value(metrics.d_prime(genuine, impostor)),
    }
    for point in metrics.fnmr_at_fmr_many(genuine, impostor, FMR_TARGETS):
        key = fmr_key(point.target_fmr)
        out[key] = _value(point.fnmr) if point.measurable else None
        out[f"{key}_threshold"] = _value(point.threshold)
        out[f"{key}_measurable"] = bool(point.measurable)
    return out


def write_metrics(scores_path: str, out_path: str) -> dict:
    result = compute_metrics(scores_path)
    write_json(out_path, result)
    log.info("%s: EER %.4f over %d genuine / %d impostor", scores_path, result["eer"] or float("nan"),
             result["n_genuine"], result["n_impostor"])
    return result
