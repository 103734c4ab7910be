"""Figures of a training run: the training loss and the val masked-probe and unmasked EERs per epoch."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd
import pyarrow.parquet as pq  # noqa: E402

from maskbench.reporting.figure_files import save_figure  # noqa: E402


def training_curve_figure(curve_path: str, title: str, png_path: str, kept_epoch: int | None = None,
                          unmasked_limit: float | None = None) -> None:
    """Two panels over epochs: mean training loss, and val EER with the untrained model (epoch 0)
    as a dashed line and the kept epoch marked (``kept_epoch``, as the training report says; by
    default the lowest val EER; none where val gave no EER). Where the curve has the val unmasked
    EER it is drawn too, with ``unmasked_limit`` (the starting model's plus the tolerance) as a
    dotted line. Writes the PNG and a PDF beside it."""
    curve = pq.read_table(curve_path).to_pandas().sort_values("epoch")
    if curve.empty:
        raise ValueError(f"{curve_path}: the training curve has no rows")
    fig, (ax_loss, ax_eer) = plt.subplots(2, 1, figsize=(6.4, 5.6), dpi=120, sharex=True)
    trained = curve[curve["loss"].notna()]
    ax_loss.plot(trained["epoch"], trained["loss"], marker="o", markersize=3)
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title(title)
    ax_loss.grid(True, alpha=0.3)

    ax_eer.plot(curve["epoch"], curve["val_eer"], marker="o", markersize=3, label="val masked-probe EER")
    if "val_unmasked_eer" in curve and curve["val_unmasked_eer"].notna().any():
        ax_eer.plot(curve["epoch"], curve["val_unmasked_eer"], marker="s", markersize=3, color="tab:green",
                    label="val unmasked EER")
        if unmasked_limit is not None:
            ax_eer.axhline(unmasked_limit, linestyle=":", color="tab:green",
                           label=f"unmasked limit ({unmasked_limit:.3f})")
    untrained = float(curve["val_eer"].iloc[0])
    ax_eer.axhline(untrained, linestyle="--", color="grey", label=f"untrained ({untrained:.3f})")
    if kept_epoch is not None:
        kept = curve[curve["epoch"] == kept_epoch]
    else:  # idxmin: the earliest of equal minima
        kept = curve.loc[[curve["val_eer"].idxmin()]] if curve["val_eer"].notna().any() else curve.iloc[:0]
    if not kept.empty and pd.notna(kept["val_eer"].iloc[0]):
        best = kept.iloc[0]
        ax_eer.plot([best["epoch"]], [best["val_eer"]], marker="*", markersize=12, linestyle="none",
                    color="tab:red", label=f"kept: epoch {int(best['epoch'])} ({best['val_eer']:.3f})")
    ax_eer.set_xlabel("epoch")
    ax_eer.set_ylabel("val EER")
    ax_eer.set_xlim(-0.5, max(1.0, float(curve["epoch"].max())) + 0.5)
    if not math.isnan(untrained):
        ax_eer.set_ylim(bottom=0.0)
    ax_eer.grid(True, alpha=0.3)
    ax_eer.legend(fontsize=7, loc="upper right")
    save_figure(fig, png_path)
