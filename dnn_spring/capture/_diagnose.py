"""A stress map of a network: which layers carry the load, and which way to move.

:func:`diagnose` measures the load curve (:func:`~dnn_spring.capture.load_curve`)
and reads it the way the phase diagram does (docs/science.md#load-curve-and-shape, §6):

- each hidden point ℓ = 1..L−1 (the logits left out) gets its **load**, the
  drop of log D across it, and its **share** of the total load
  ``load_ℓ / Σ load``;
- with ``n`` loaded points an even share is ``1/n``.  A layer is
  **overloaded** when its share exceeds :data:`OVERLOAD` × ``1/n`` (twice
  the even share), **idle** when its share is below :data:`IDLE` × ``1/n``
  (a quarter of it, negative loads included: the layer undoes separation),
  and **ok** otherwise.  The input point, the logits and a curve whose total
  load is not positive (or below 1e-6 of the summed absolute loads) are
  flagged ``ok`` with the share NaN; with only two loaded points a layer can
  be overloaded only when the other's load is negative;
- the curve's shape (v, c, the linear fit, the regime) gives the advice: a
  concave curve (deep layers carry more) sits in the low-noise, strongly
  nonlinear corner of the phase diagram, a convex one on the noisy or
  near-linear side, and the linear band between them is where the paper
  finds the best test accuracy.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from dnn_spring._checks import UNSET, renamed
from dnn_spring.metrics._shape import load_shape

__all__ = ["Diagnosis", "diagnose", "OVERLOAD", "IDLE", "FLAGS"]

#: A layer whose share of the load exceeds OVERLOAD × the even share is overloaded.
OVERLOAD = 2.0
#: A layer whose share is below IDLE × the even share is idle.
IDLE = 0.25
FLAGS = ("overloaded", "idle", "ok")


@dataclass(frozen=True)
class Diagnosis:
    """What :func:`diagnose` found.

    Attributes
    ----------
    layers : DataFrame
        One row per point: ``layer``, ``width``, ``log_d``, ``load``,
        ``share``, ``flag`` (``"overloaded"``, ``"idle"`` or ``"ok"``),
        ``is_logits``, ``rank_b``, ``cond_b``.
    summary : dict
        ``v``, ``c``, ``c_rel``, ``fit_slope``, ``fit_intercept``, ``fit_r2``,
        ``regime``.
    advice : str
        One or two sentences on which way to move noise or nonlinearity.
    """

    layers: pd.DataFrame
    summary: dict
    advice: str

    def __str__(self) -> str:
        table = self.layers[["layer", "width", "log_d", "load", "share", "flag"]]
        s = self.summary
        return (table.to_string(index=False, float_format=lambda v: f"{v:.3f}") +
                f"\nv {s['v']:.3f}  c {s['c']:.3f}  fit slope {s['fit_slope']:.3f} "
                f"(R² {s['fit_r2']:.2f})  regime {s['regime']}\n{self.advice}")

    def plot(self):
        """The stress map: each layer's share of the load as a bar, coloured by its flag."""
        import matplotlib.pyplot as plt

        from dnn_spring._style import figure_style

        rows = self.layers[self.layers["share"].notna()]
        colors = {"overloaded": "#d62728", "idle": "#7f7f7f", "ok": "#1f77b4"}
        with figure_style():
            fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(rows) + 1.5), 3.2),
                                   layout="constrained")
            ax.bar(range(len(rows)), rows["share"], color=[colors[f] for f in rows["flag"]])
            even = 1.0 / max(len(rows), 1)
            ax.axhline(even, color="black", lw=0.8, ls="--", label="even share")
            ax.axhline(OVERLOAD * even, color="#d62728", lw=0.6, ls=":", label="overloaded above")
            ax.axhline(IDLE * even, color="#7f7f7f", lw=0.6, ls=":", label="idle below")
            ax.set_xticks(range(len(rows)), rows["layer"], rotation=45, ha="right", fontsize=7)
            ax.set_ylabel("share of the load")
            ax.set_title(f"{self.summary['regime']} (c = {self.summary['c']:.2f})")
            ax.legend(fontsize=6)
        return fig


def diagnose(model, data, labels=None, *, layers=None, sample_size: "int | None" = 512,
             seed: int = 0, logits="auto", probe_size=UNSET, **kwargs) -> Diagnosis:
    """Measure ``model``'s load curve and say which layers are overloaded or idle.

    It measures exactly what a :class:`~dnn_spring.capture.LoadCurveTracker` with the
    same arguments measures (the same measurement set, points and logits), so the
    tracker and the stress map agree on one model.

    Parameters
    ----------
    model, data, labels, layers
        As in :func:`~dnn_spring.capture.load_curve` (clean training labels); the
        points by default are :func:`~dnn_spring.capture._points.default_points`.
    sample_size : int or None, default=512
        With tensor data, a seeded subset of this many samples (the
        tracker's default); None measures every sample.
    seed : int, default=0
        Seed of the subset.
    logits : "auto", str, int or None, default="auto"
        Which point is the logits (see :func:`~dnn_spring.capture.load_curve`).
    **kwargs
        Further :class:`~dnn_spring.capture.LoadCurveTracker` options (``pool``,
        ``target``, ``output``, ``max_classes``, ``batch_size``, ``device``,
        ``method``, ``project``, ...).

    Returns
    -------
    Diagnosis
        A curve with fewer than 3 points without the logits, or a point
        without a finite log D (a collapsed layer), gives one warning and a
        NaN shape (``regime`` None), and the advice says why.
    """
    from dnn_spring.capture._tracker import LoadCurveTracker

    sample_size = renamed("probe_size", probe_size, "sample_size", sample_size)
    tracker = LoadCurveTracker(model, data, labels, layers=layers, sample_size=sample_size,
                               seed=seed, logits=logits, **kwargs)
    with warnings.catch_warnings():  # the tracker's own few-points warning: said below instead
        warnings.filterwarnings("ignore", message="the load curve has")
        frame = tracker.measure(keep=False)
    try:
        shape = load_shape(frame)
    except ValueError as exc:
        warnings.warn(f"no load-curve shape for {type(model).__name__}: {exc}", UserWarning,
                      stacklevel=2)
        shape = None
    hidden = ~frame["is_logits"].astype(bool) & (frame["point"] > 0)
    loads = frame["load"].where(hidden)
    total = float(loads.sum())
    # loads that nearly cancel give no meaningful shares: treated as "not positive"
    share = loads / total if total > 1e-6 * float(loads.abs().sum()) else loads * np.nan
    even = 1.0 / max(int(hidden.sum()), 1)
    flag = np.where(share > OVERLOAD * even, "overloaded",
                    np.where(share < IDLE * even, "idle", "ok"))
    table = pd.DataFrame({
        "layer": frame["layer"], "width": frame["width"], "log_d": frame["log_d"],
        "load": frame["load"], "share": share,
        "flag": np.where(share.notna(), flag, "ok"),
        "is_logits": frame["is_logits"], "rank_b": frame["rank_b"], "cond_b": frame["cond_b"],
        "near_singular": frame["near_singular"], "under_sampled": frame["under_sampled"],
    })
    names = ("v", "c", "c_rel", "fit_slope", "fit_intercept", "fit_r2")
    summary = dict.fromkeys(names, float("nan")) | {"regime": None}
    if shape is not None:
        summary = {"v": shape.v, "c": shape.c, "c_rel": shape.c_rel, "fit_slope": shape.slope,
                   "fit_intercept": shape.intercept, "fit_r2": shape.r2, "regime": shape.regime}
    return Diagnosis(table, summary, _advice(shape, table, total, _knobs(model)))


def _knobs(model) -> dict:
    """What the model has to turn: a LeakyReLU slope, dropout."""
    modules = list(model.modules())
    return {"slope": any(isinstance(m, torch.nn.LeakyReLU) for m in modules),
            "dropout": any(isinstance(m, torch.nn.modules.dropout._DropoutNd) for m in modules)}


def _advice(shape, table: pd.DataFrame, total: float, knobs: dict) -> str:
    if shape is None:
        return ("No shape: the curve needs at least 3 points with a finite log D besides the "
                "logits; choose more points with `layers=`.")
    if not total > 0:
        return (f"The curve rises (total load {total:.2f} <= 0): the last hidden point separates "
                "the classes no better than the first, so the layers undo separation on balance "
                "and no layer's share is defined. An untrained or diverged network, or labels "
                "the model has not learned, look like this; train it (or check the labels) first.")
    named = {f: table.loc[table["flag"] == f, "layer"].tolist() for f in ("overloaded", "idle")}
    more_noise = "a larger learning rate, a smaller batch, " + \
        ("more dropout" if knobs["dropout"] else "dropout") + ", label smoothing"
    less_noise = "a smaller learning rate, a larger batch, " + \
        ("less dropout" if knobs["dropout"] else "no dropout") + ", less label smoothing"
    if shape.regime == "concave":
        text = (f"The deep layers carry most of the load (concave curve, c = {shape.c:.2f}), as in "
                f"the low-noise, strongly nonlinear corner of the phase diagram: add training "
                f"noise ({more_noise})"
                + (" or make the activations more linear (a larger LeakyReLU slope)"
                   if knobs["slope"] else "") + " to even the load.")
    elif shape.regime == "convex":
        text = (f"The shallow layers carry most of the load (convex curve, c = {shape.c:.2f}), as "
                f"on the noisy or near-linear side of the phase diagram: reduce the training "
                f"noise ({less_noise})"
                + (" or make the activations more nonlinear (a smaller LeakyReLU slope)"
                   if knobs["slope"] else "") + " to even the load.")
    elif named["overloaded"] or named["idle"]:
        text = (f"The first and last layers carry similar loads (linear by c = {shape.c:.2f}), "
                f"but the load is uneven in between (v = {shape.v:.2f}): the flagged layers below "
                "do much more or much less than their share.")
    else:
        text = (f"The load is spread about evenly (linear curve, c = {shape.c:.2f}): the band of "
                "the phase diagram where the paper finds the best test accuracy; keep the "
                "current noise and nonlinearity.")
    parts = [f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} {flag}"
             for flag, names in named.items() if names]
    return text + (f" Layers: {'; '.join(parts)}." if parts else "")
