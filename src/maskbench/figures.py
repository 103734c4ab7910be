"""Figures: ROC curves per dataset, every model and comparison on one plot."""

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
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", metadata=_PNG_META)
    with atomic_path(Path(png_path).with_suffix(".pdf")) as tmp:
        fig.savefig(tmp, format="pdf", metadata=_PDF_META)
    plt.close(fig)
