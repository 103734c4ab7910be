"""Figures per dataset: ROC and DET curves, score histograms, and the cost of each mask type."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from maskbench import metrics  # noqa: E402
from maskbench.atomic import atomic_path  # noqa: E402
from maskbench.metrics_step import read_scores  # noqa: E402

# Fixed metadata: the same scores give the same bytes.
_PNG_META = {"Software": None}
_PDF_META = {"Creator": None, "Producer": None, "CreationDate": None}


def roc_figure(curves: list[dict[str, str]], title: str, png_path: str) -> None:
    """ROC (true match rate against false match rate, log x) of each score file in ``curves``;
    each entry has ``label`` and ``path``. Writes the PNG and a PDF beside it."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for curve in curves:
        genuine, impostor, _ = read_scores(curve["path"])
        rates = metrics.error_rates(genuine, impostor)
        fmr = np.clip(rates.fmr, 1e-5, 1.0)
        eer = metrics.eer(genuine, impostor).eer
        ax.step(fmr, 1.0 - rates.fnmr, where="post", label=f"{curve['label']} (EER {eer:.3f})")
    ax.set_xscale("log")
    ax.set_xlim(1e-3, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false match rate")
    ax.set_ylabel("true match rate (1 - FNMR)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, png_path)


def _save(fig, png_path: str) -> None:
    """PNG and a PDF beside it, atomically, with fixed metadata."""
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", metadata=_PNG_META)
    with atomic_path(Path(png_path).with_suffix(".pdf")) as tmp:
        fig.savefig(tmp, format="pdf", metadata=_PDF_META)
    plt.close(fig)


_DET_TICKS = np.array([1e-4, 1e-3, 1e-2, 5e-2, 0.2, 0.5, 0.8, 0.95])


def det_figure(curves: list[dict[str, str]], title: str, png_path: str) -> None:
    """DET curves (FNMR against FMR, both on probit axes) of each score file in ``curves``."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for curve in curves:
        genuine, impostor, _ = read_scores(curve["path"])
        fmr, fnmr = metrics.det_curve(genuine, impostor)
        ax.plot(metrics.probit(fmr), metrics.probit(fnmr), label=curve["label"])
    ticks = metrics.probit(_DET_TICKS)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(ticks)
        axis.set_ticklabels([f"{t:g}" for t in _DET_TICKS])
    lo, hi = metrics.probit([5e-4, 0.95])
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("false match rate (probit scale)")
    ax.set_ylabel("false non-match rate (probit scale)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    _save(fig, png_path)


def score_histograms(curves: list[dict[str, str]], title: str, png_path: str) -> None:
    """Genuine and impostor score histograms, one panel per score file (the "eval graph")."""
    n = len(curves)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), dpi=110, squeeze=False)
    for ax, curve in zip(axes.flat, curves):
        genuine, impostor, _ = read_scores(curve["path"])
        bins = np.histogram_bin_edges(np.concatenate([genuine, impostor]), bins=40)
        ax.hist(impostor, bins=bins, alpha=0.6, density=True, label=f"impostor ({impostor.size})")
        ax.hist(genuine, bins=bins, alpha=0.6, density=True, label=f"genuine ({genuine.size})")
        ax.axvline(metrics.eer(genuine, impostor).threshold, color="k", lw=0.8, ls="--")
        ax.set_title(curve["label"], fontsize=8)
        ax.set_xlabel("score (higher = more similar)", fontsize=7)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title)
    _save(fig, png_path)


def mask_effect_figure(rows: list[dict], title: str, png_path: str, metric: str = "eer") -> None:
    """Bar chart of ``metric`` per comparison (x) and model (bars): the cost of each mask type."""
    comparisons = list(dict.fromkeys(r["comparison"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(comparisons) + 2), 4.2), dpi=120)
    x = np.arange(len(comparisons))
    for k, model in enumerate(models):
        values = [next((r[metric] for r in rows if r["model"] == model and r["comparison"] == c), None)
                  for c in comparisons]
        heights = [np.nan if v is None else v for v in values]
        ax.bar(x + (k - (len(models) - 1) / 2) * width, heights, width, label=model)
    ax.set_xticks(x)
    ax.set_xticklabels([c.replace("-vs-", "\nvs ") for c in comparisons], fontsize=7)
    ax.set_ylabel(metric.upper() if metric == "eer" else metric)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, png_path)
