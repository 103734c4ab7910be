"""Figures a person can read: one colour per mask type, one line style per model, at most
MAX_CURVES curves per panel, legends beside the axes (not over the curves)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from maskbench.reporting import figures  # noqa: E402
from maskbench.reporting.figures import MAX_CURVES, curve_styles, roc_figure  # noqa: E402
from maskbench.io.manifests import SCORES_SCHEMA  # noqa: E402

MODELS = ["dlib_resnet", "dlib_masked_head", "ensemble"]
COMPARISONS = ["unmasked-vs-unmasked", "unmasked-vs-surgical_blue", "unmasked-vs-n95_white", "unmasked-vs-cloth_black"]


def curves(models=MODELS, comparisons=COMPARISONS, root=None):
    out = []
    rng = np.random.default_rng(0)
    for m in models:
        for k, c in enumerate(comparisons):
            entry = {"label": f"{m}: {c.replace('-vs-', ' vs ')}", "model": m, "comparison": c,
                     "path": "" if root is None else str(root / f"{m}-{c}.parquet")}
            if root is not None:
                n = 400
                genuine = rng.random(n) < 0.2
                score = np.where(genuine, rng.normal(3 - k * 0.5, 1, n), rng.normal(0, 1, n))
                pq.write_table(pa.Table.from_pydict(
                    {"pair_id": np.arange(n), "ref_image": ["a"] * n, "probe_image": ["b"] * n, "genuine": genuine,
                     "fold": np.zeros(n, dtype=np.int16), "score": score, "status": ["ok"] * n},
                    schema=SCORES_SCHEMA), entry["path"])
            out.append(entry)
    return out


def test_twelve_curves_get_a_panel_per_model_with_one_colour_per_mask():
    panels, colours, styles = curve_styles(curves())
    assert [title for title, _ in panels] == MODELS
    assert all(len(members) <= MAX_CURVES for _, members in panels)
    masks = ["unmasked", "surgical_blue", "n95_white", "cloth_black"]
    assert len({colours[m] for m in masks}) == len(masks)  # no colour repeats
    assert len({styles[(m, True)] for m in MODELS}) == len(MODELS)  # one line style per model


def test_few_curves_share_one_panel_and_every_curve_looks_different():
    few = curves(MODELS[:2])
    panels, colours, styles = curve_styles(few)
    assert len(panels) == 1 and len(panels[0][1]) == 8
    looks = set()
    for c in few:
        model, ref, probe = figures._parts(c)
        looks.add((colours[figures._mask_of(ref, probe)], str(styles[(model, ref == "unmasked")])))
    assert len(looks) == len(few)


def test_many_comparisons_of_one_model_are_split_into_readable_panels():
    many = ["unmasked-vs-unmasked"] + [f"unmasked-vs-m{k}" for k in range(6)] + [f"m{k}-vs-m{k}" for k in range(6)]
    panels, colours, _ = curve_styles(curves(["dlib_resnet"], many))
    assert len(panels) == 2 and all(len(members) <= MAX_CURVES for _, members in panels)
    assert colours["m3"] != colours["m4"]


def test_roc_legend_sits_beside_the_axes(tmp_path, monkeypatch):
    shown = {}
    monkeypatch.setattr(figures, "save_figure", lambda fig, path, pdf=True: shown.update(fig=fig))
    roc_figure(curves(MODELS[:2], root=tmp_path), "ROC", str(tmp_path / "roc.png"))
    fig = shown["fig"]
    fig.tight_layout()  # as save_figure does before writing
    fig.canvas.draw()
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        assert len(ax.get_lines()) <= MAX_CURVES
        axes_box = ax.get_window_extent()
        legend_box = legend.get_window_extent()
        assert legend_box.x0 >= axes_box.x1  # outside, to the right: it hides no curve
        assert legend_box.x1 <= fig.bbox.x1 + 1  # and not cut off
    plt.close(fig)


def test_a_comparison_without_a_scored_genuine_pair_is_named_not_a_crash(tmp_path):
    """No real-masked face found: every genuine pair unscored. The curves of the others are drawn,
    the legend says why this one is missing (the figure stopped the run)."""
    entries = curves(MODELS[:1], COMPARISONS[:2], root=tmp_path)
    table = pq.read_table(entries[1]["path"]).to_pandas()
    table.loc[table.genuine, "status"], table.loc[table.genuine, "score"] = "missing_embedding", np.nan
    pq.write_table(pa.Table.from_pandas(table, schema=SCORES_SCHEMA, preserve_index=False), entries[1]["path"])
    for draw in (figures.roc_figure, figures.det_figure, figures.score_histograms):
        path = tmp_path / f"{draw.__name__}.png"
        draw(entries, "t", str(path))
        assert path.stat().st_size > 5000
    shown = {}
    original = figures.save_figure
    figures.save_figure = lambda fig, path, pdf=True: shown.update(fig=fig)
    try:
        roc_figure(entries, "ROC", str(tmp_path / "x.png"))
    finally:
        figures.save_figure = original
    labels = [t.get_text() for ax in shown["fig"].axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert any("no scored genuine pair" in label for label in labels) and any("EER" in label for label in labels)
    plt.close(shown["fig"])


def test_roc_of_many_pairs_draws_a_thinned_curve_of_exact_points(tmp_path, monkeypatch):
    """A curve of every threshold held ~0.3 GB per LFW-sized comparison (7 GB for one figure): each
    drawn curve has at most CURVE_POINTS points, every one a point of the exact ROC, both ends kept."""
    from maskbench.evaluation import metrics

    rng = np.random.default_rng(1)
    n = 60_000
    genuine = rng.random(n) < 0.05
    score = np.where(genuine, rng.normal(2.5, 1, n), rng.normal(0, 1, n))
    path = tmp_path / "big.parquet"
    pq.write_table(pa.Table.from_pydict(
        {"pair_id": np.arange(n), "ref_image": ["a"] * n, "probe_image": ["b"] * n, "genuine": genuine,
         "fold": np.zeros(n, dtype=np.int16), "score": score, "status": ["ok"] * n}, schema=SCORES_SCHEMA), path)
    shown = {}
    monkeypatch.setattr(figures, "save_figure", lambda fig, path, pdf=True: shown.update(fig=fig))
    roc_figure([{"label": "m: unmasked vs unmasked", "model": "m", "comparison": "unmasked-vs-unmasked",
                 "path": str(path)}], "ROC", str(tmp_path / "roc.png"))
    (line,) = [ln for ax in shown["fig"].axes for ln in ax.get_lines()]
    x, y = line.get_xdata(), line.get_ydata()
    plt.close(shown["fig"])
    rates = metrics.error_rates(score[genuine], score[~genuine])
    assert rates.fmr.size > 4 * figures.CURVE_POINTS  # thinning was needed
    assert 100 < x.size <= figures.CURVE_POINTS
    exact = set(zip(np.clip(rates.fmr, 1e-5, 1.0).tolist(), (1.0 - rates.fnmr).tolist()))
    assert all(point in exact for point in zip(x.tolist(), y.tolist()))
    assert (x[0], y[0]) == (np.clip(rates.fmr[0], 1e-5, 1.0), 1.0 - rates.fnmr[0])
    assert (x[-1], y[-1]) == (np.clip(rates.fmr[-1], 1e-5, 1.0), 1.0 - rates.fnmr[-1])


def test_curve_figures_read_each_score_file_once_and_draw_its_histogram(tmp_path, monkeypatch):
    """At LFW's size a score file holds 7.8 M pairs: the stage reads each once for its three figures
    (it read them three times and computed the error rates twice), and the histogram drawn from the
    counts is the scores' own density histogram."""
    from maskbench.io import score_files
    from maskbench.stages.figures import curve_figures

    entries = curves(MODELS[:1], COMPARISONS[:3], root=tmp_path)
    reads = []

    def counted(path):
        reads.append(path)
        return score_files.read_scores(path)

    monkeypatch.setattr(figures, "read_scores", counted)
    shown = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path, pdf=True: shown.append(fig))
    curve_figures(entries, "d", *(str(tmp_path / f"{n}.png") for n in ("roc", "det", "hist")))
    assert sorted(reads) == sorted(e["path"] for e in entries)
    assert len(shown) == 3
    genuine, impostor, _ = score_files.read_scores(entries[0]["path"])
    bins = np.histogram_bin_edges(np.concatenate([genuine, impostor]), bins=figures.HISTOGRAM_BINS)
    ax = shown[2].axes[0]
    heights = np.array([p.get_height() for p in ax.patches])
    assert heights.size == 2 * (bins.size - 1)
    np.testing.assert_array_equal(heights[:bins.size - 1], np.histogram(impostor, bins=bins, density=True)[0])
    np.testing.assert_array_equal(heights[bins.size - 1:], np.histogram(genuine, bins=bins, density=True)[0])
    for fig in shown:
        plt.close(fig)
