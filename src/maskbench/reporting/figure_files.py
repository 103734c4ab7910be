"""Figure files: PNG (and a PDF beside it), written atomically with fixed metadata so the same
figure gives the same bytes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from maskbench.io.atomic import atomic_path  # noqa: E402

_PNG_META = {"Software": None}
_PDF_META = {"Creator": None, "Producer": None, "CreationDate": None}


def save_figure(fig, png_path: str | Path, pdf: bool = True) -> None:
    """Save ``fig`` as PNG (and PDF beside it unless ``pdf=False``), then close it."""
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", metadata=_PNG_META)
    if pdf:
        with atomic_path(Path(png_path).with_suffix(".pdf")) as tmp:
            fig.savefig(tmp, format="pdf", metadata=_PDF_META)
    plt.close(fig)
