"""Figures per dataset: ROC and DET curves, score histograms, and the cost of each mask type."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from maskbench.evaluation import metrics  # noqa: E402
from maskbench.reporting.figure_files import save_figure  # noqa: E402
from maskbench.io.score_files import read_scores  # noqa: E402

# Fixed metadata: the same scores give the same bytes.


# Curves a reader can tell apart: one colour per mask type, one line style per model (and kind of
# reference), at most MAX_CURVES per panel (else a panel per model), the legend beside the axes.
MAX_CURVES = 8
UNMASKED_COLOUR = "#000000"
MASK_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#999999"]
LINE_STYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3))]


def _parts(curve: dict[str, str]) -> tuple[str, str, str]:
    """(model, reference variant, probe variant) of a curve, from its keys or its label
    ``model: ref vs probe``."""
    if "model" in curve and "comparison" in curve:
        ref, probe = curve["comparison"].split("-vs-")
        return curve["model"], ref, probe
    model, _, comparison = curve["label"].partition(": ")
    ref, _, probe = comparison.partition(" vs ")
    return model, ref, probe or ref


def _mask_of(ref: str, probe: str) -> str:
    return probe if probe != "unmasked" else ref


def curve_styles(curves: list[dict[str, str]]) -> tuple[list[tuple[str, list[dict]]], dict[str, str], dict]:
    """(panels as (title, curves), colour per mask type, line style per (model, reference kind)).

    One panel while there are at most MAX_CURVES curves; otherwise one per model, and a model with
    more than MAX_CURVES comparisons gets one panel for the unmasked reference, one for the rest."""
    masks = list(dict.fromkeys(_mask_of(*_parts(c)[1:]) for c in curves))
    others = [m for m in masks if m != "unmasked"]
    colours = {"unmasked": UNMASKED_COLOUR}
    colours.update({m: MASK_COLOURS[k % len(MASK_COLOURS)] for k, m in enumerate(others)})
    keys = list(dict.fromkeys((_parts(c)[0], _parts(c)[1] == "unmasked") for c in curves))
    styles = {k: LINE_STYLES[i % len(LINE_STYLES)] for i, k in enumerate(keys)}
    if len(curves) <= MAX_CURVES:
        return [("", curves)], colours, styles
    panels = []
    for model in dict.fromkeys(_parts(c)[0] for c in curves):
        mine = [c for c in curves if _parts(c)[0] == model]
        if len(mine) <= MAX_CURVES:
            panels.append((model, mine))
            continue
        for unmasked_ref, name in ((True, "unmasked reference"), (False, "masked reference")):
            part = [c for c in mine if (_parts(c)[1] == "unmasked") == unmasked_ref]
            panels += [(f"{model}, {name}", part[i:i + MAX_CURVES]) for i in range(0, len(part), MAX_CURVES)]
    return panels, colours, styles


def _panel_figure(panels: list, title: str):
    """A figure with one axes per panel (two columns), room on the right of each for its legend."""
    cols = min(len(panels), 2)
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7.6 * cols, 4.2 * rows), dpi=110, squeeze=False)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title)
    return fig, list(axes.flat)[:len(panels)]


def _legend_outside(ax) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)


def style_of(styles: dict, model: str, ref: str) -> str:
    return styles[(model, ref == "unmasked")]


# points drawn per ROC or DET curve (det_curve keeps them spread over every rate): more than a panel has pixels
CURVE_POINTS = 2000
HISTOGRAM_BINS = 40


@dataclass(frozen=True)
class CurveData:
    """What the ROC, DET and histogram figures draw of one score file, so that the file is read
    and its error rates computed once for all three (at LFW's size, 7.8 M impostor scores each):
    the DET curve's points (at most CURVE_POINTS, every one exact; both figures draw them), the
    EER, and the histogram counts over bins shared by genuine and impostor scores."""

    n_genuine: int
    n_impostor: int
    fmr: np.ndarray | None = None  # None: a side has no scored pair
    fnmr: np.ndarray | None = None
    eer: metrics.EER | None = None
    bins: np.ndarray | None = None  # None: no scored pair at all
    genuine_counts: np.ndarray | None = None
    impostor_counts: np.ndarray | None = None


def curve_data(path: str) -> CurveData:
    """Read one score file and reduce it to what the curve figures draw."""
    genuine, impostor, _ = read_scores(path)
    # sorted once here, the DET curve and the EER sort nothing (they sort only unsorted scores)
    genuine, impostor = np.sort(genuine), np.sort(impostor)
    data = {"n_genuine": int(genuine.size), "n_impostor": int(impostor.size)}
    if genuine.size or impostor.size:
        bins = np.histogram_bin_edges(np.concatenate([genuine, impostor]), bins=HISTOGRAM_BINS)
        data.update(bins=bins, genuine_counts=np.histogram(genuine, bins=bins)[0],
                    impostor_counts=np.histogram(impostor, bins=bins)[0])
    if genuine.size and impostor.size:
        fmr, fnmr = metrics.det_curve(genuine, impostor, max_points=CURVE_POINTS)
        data.update(fmr=fmr, fnmr=fnmr, eer=metrics.eer(genuine, impostor))
    return CurveData(**data)


def with_curve_data(curves: list[dict]) -> list[dict]:
    """``curves`` with each entry's CurveData under ``data``: read once, drawn by every figure."""
    return [{**c, "data": curve_data(c["path"])} for c in curves]


def _data_of(curve: dict) -> CurveData:
    return curve["data"] if "data" in curve else curve_data(curve["path"])


def _draw_curves(curves: list[dict[str, str]], title: str, png_path: str, draw, setup) -> None:
    panels, colours, styles = curve_styles(curves)
    fig, axes = _panel_figure(panels, title)
    for ax, (panel_title, members) in zip(axes, panels):
        for curve in members:
            model, ref, probe = _parts(curve)
            data = _data_of(curve)
            # a panel of one model names only the comparison
            label = f"{ref} vs {probe}" if panel_title else curve["label"]
            if data.fmr is None:  # e.g. no real-masked face found: no curve, said so
                ax.plot([], [], color=colours[_mask_of(ref, probe)], linestyle=style_of(styles, model, ref),
                        label=f"{label} (no scored {'genuine' if not data.n_genuine else 'impostor'} pair)")
                continue
            draw(ax, data, label, colour=colours[_mask_of(ref, probe)], style=style_of(styles, model, ref))
        setup(ax)
        if panel_title:
            ax.set_title(panel_title, fontsize=9)
        _legend_outside(ax)
    save_figure(fig, png_path)


def roc_figure(curves: list[dict[str, str]], title: str, png_path: str) -> None:
    """ROC (true match rate against false match rate, log x) of each score file in ``curves``;
    each entry has ``label`` and ``path`` (and ``model``, ``comparison``). Colour: mask type; line
    style: model. Writes the PNG and a PDF beside it."""

    def draw(ax, data, label, colour, style):
        # the DET curve's points: the same trade-off, thinned to CURVE_POINTS while keeping its
        # resolution at every rate (every threshold of LFW's 7.8 M impostor pairs held ~0.3 GB
        # per curve in the figure: 7 GB for one figure)
        ax.step(np.clip(data.fmr, 1e-5, 1.0), 1.0 - data.fnmr, where="post", color=colour, linestyle=style,
                lw=1.3, label=f"{label} (EER {data.eer.eer:.3f})")

    def setup(ax):
        ax.set_xscale("log")
        ax.set_xlim(1e-3, 1.0)
        ax.set_ylim(0.0, 1.01)
        ax.set_xlabel("false match rate")
        ax.set_ylabel("true match rate (1 - FNMR)")
        ax.grid(True, which="both", alpha=0.3)

    _draw_curves(curves, title, png_path, draw, setup)


_DET_TICKS = np.array([1e-4, 1e-3, 1e-2, 5e-2, 0.2, 0.5, 0.8, 0.95])


def det_figure(curves: list[dict[str, str]], title: str, png_path: str) -> None:
    """DET curves (FNMR against FMR, both on probit axes) of each score file in ``curves``, styled
    as the ROC."""

    def draw(ax, data, label, colour, style):
        ax.plot(metrics.probit(data.fmr), metrics.probit(data.fnmr), color=colour, linestyle=style, lw=1.3,
                label=label)

    def setup(ax):
        ticks = metrics.probit(_DET_TICKS)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_ticks(ticks)
            axis.set_ticklabels([f"{t:g}" for t in _DET_TICKS])
        lo, hi = metrics.probit([5e-4, 0.95])
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("false match rate (probit scale)")
        ax.set_ylabel("false non-match rate (probit scale)")
        ax.grid(True, alpha=0.3)

    _draw_curves(curves, title, png_path, draw, setup)


def score_histograms(curves: list[dict[str, str]], title: str, png_path: str) -> None:
    """Genuine and impostor score histograms, one panel per score file (the "eval graph")."""
    n = len(curves)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), dpi=110, squeeze=False)
    for ax, curve in zip(axes.flat, curves):
        data = _data_of(curve)
        if data.bins is not None:
            for counts, size, name in ((data.impostor_counts, data.n_impostor, "impostor"),
                                       (data.genuine_counts, data.n_genuine, "genuine")):
                if size:  # the counts, weighted at their bins' left edges: the scores' own histogram
                    ax.hist(data.bins[:-1], bins=data.bins, weights=counts, alpha=0.6, density=True,
                            label=f"{name} ({size})")
                else:
                    ax.plot([], [], label=f"{name} (0 scored)")
        if data.eer is not None:
            ax.axvline(data.eer.threshold, color="k", lw=0.8, ls="--")
        ax.set_title(curve["label"], fontsize=8)
        ax.set_xlabel("score (higher = more similar)", fontsize=7)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title)
    save_figure(fig, png_path)


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
    _legend_outside(ax)
    save_figure(fig, png_path)
