"""The one visual style shared by every figure of the package."""

from __future__ import annotations

import contextlib
from pathlib import Path

# No backend is forced here: headless runs fall back to Agg by themselves, and
# notebooks keep their inline backend.
import matplotlib.pyplot as plt

__all__ = ["figure_style", "save_figure", "REGIME_COLORS", "CURVE_COLOR"]

#: Colours of the three regimes, used by every phase-diagram figure.
REGIME_COLORS = {"concave": "#c0392b", "linear": "#27ae60", "convex": "#2874a6"}
#: Colour of a load curve drawn inside a phase-diagram cell.
CURVE_COLOR = "#1b1b1b"

_RC = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "image.cmap": "Greys",
}


@contextlib.contextmanager
def figure_style():
    """Context manager applying the package's matplotlib style."""
    with plt.rc_context(_RC):
        yield


def save_figure(fig, out, *, pdf: bool = False) -> list:
    """Write ``fig`` to ``out`` (PNG), and beside it as PDF when ``pdf``; close it.

    Returns the written paths.  The package's savefig settings (dpi, tight
    bounding box) apply.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = [out, out.with_suffix(".pdf")] if pdf else [out]
    with figure_style():
        for path in written:
            fig.savefig(path)
    plt.close(fig)
    return written
