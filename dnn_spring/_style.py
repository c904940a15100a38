"""The one visual style shared by every figure of the package."""

from __future__ import annotations

import contextlib

# No backend is forced here: headless runs fall back to Agg by themselves, and
# notebooks keep their inline backend.
import matplotlib.pyplot as plt

__all__ = ["figure_style", "REGIME_COLORS", "CURVE_COLOR"]

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
