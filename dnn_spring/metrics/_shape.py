"""Shape statistics of a load curve (docs/science.md#load-curve-and-shape).

A load curve is a sequence ``log D_0, ..., log D_{L-1}`` (the logits point left
out). The load of layer ℓ is the drop ``log D_{ℓ-1} - log D_ℓ``.  The same
statistics describe a spring–block chain, whose curve is the distance still to
go, ``y - x_ℓ``, and whose loads are the spring extensions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from dnn_spring._checks import range_problem, require

__all__ = ["LoadShape", "load_shape", "REGIMES"]

#: The three regimes of the phase diagram, in order of increasing noise.
REGIMES = ("concave", "linear", "convex")


@dataclass(frozen=True)
class LoadShape:
    """Shape statistics of one load curve.

    Attributes
    ----------
    v : float
        Non-uniformity, the standard deviation of the loads.
    c : float
        Curvature, ``load_1 - load_{L-1}``.  Negative: deep layers carry more
        (concave curve); positive: shallow layers carry more (convex).
    c_rel : float
        ``c`` divided by the mean absolute load; the regime is read off it.
    slope, intercept, r2 : float
        Least-squares line ``log D ≈ intercept + slope · ℓ`` and its R².
    regime : str
        ``"concave"``, ``"linear"`` or ``"convex"`` (see :func:`load_shape`).
    loads : tuple of float
        The loads ``load_1 .. load_{L-1}``.
    """

    v: float
    c: float
    c_rel: float
    slope: float
    intercept: float
    r2: float
    regime: str
    loads: tuple

    def as_dict(self) -> dict:
        """Return the statistics as a plain, JSON-serialisable dict."""
        out = asdict(self)
        out["loads"] = list(self.loads)
        return out


def _curve_values(curve, logits) -> np.ndarray:
    """Return the log D values of ``curve`` with the logits point removed."""
    drop = None
    if hasattr(curve, "columns"):  # a DataFrame from load_curve
        if "log_d" not in curve.columns:
            raise ValueError(
                "`curve` is a DataFrame without a 'log_d' column; "
                f"columns are {list(curve.columns)}"
            )
        values = curve["log_d"].to_numpy(dtype=np.float64)
        if isinstance(logits, str) and logits == "auto":
            if "is_logits" in curve.columns:
                drop = np.flatnonzero(curve["is_logits"].to_numpy(dtype=bool))
        elif isinstance(logits, str):
            names = list(curve["layer"]) if "layer" in curve.columns else []
            if logits not in names:
                raise ValueError(f"`logits` layer {logits!r} is not in the curve; layers are {names}")
            drop = [names.index(logits)]
        elif logits is not None:
            drop = [int(logits)]
    else:
        try:
            values = np.asarray(curve, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"`curve` must be a DataFrame or a sequence of numbers, got {type(curve).__name__}"
            ) from exc
        if isinstance(logits, str) and logits != "auto":
            raise ValueError("`logits` given by name needs a DataFrame with a 'layer' column")
        if logits is not None and not isinstance(logits, str):
            drop = [int(logits)]
    if drop is not None and len(drop):
        n = values.size
        for i in drop:
            require(range_problem("logits", i, -n, n - 1))
        values = np.delete(values, np.asarray(drop) % n)
    return values


def load_shape(
    curve: "Sequence[float] | np.ndarray | object",
    *,
    logits: "int | str | None" = "auto",
    linear_tol: float = 0.5,
) -> LoadShape:
    """Shape statistics ``v``, ``c``, linear fit and regime of a load curve.

    Parameters
    ----------
    curve : DataFrame or array-like of shape (n_points,)
        A DataFrame returned by :func:`dnn_spring.capture.load_curve` (its ``log_d``
        column is used) or a sequence of log D values ordered from input to
        output.  For a spring–block chain pass the distances ``y - x_ℓ``.
    logits : int, str, None or "auto", default="auto"
        Which point is the logits, to be left out (docs/science.md#load-curve-and-shape).  ``"auto"`` drops
        the rows flagged by the DataFrame's ``is_logits`` column and nothing
        for a plain sequence; an int is a position, a str a layer name;
        ``None`` keeps every point.
    linear_tol : float, default=0.5
        The curve is called linear when ``|c| <= linear_tol · mean|load|``;
        otherwise concave when ``c < 0`` and convex when ``c > 0``.  With the
        default, a curve whose first and last loads differ by less than half
        the average load is linear.

    Returns
    -------
    LoadShape
        ``v = std(load)``, ``c = load_1 - load_{L-1}``, the relative curvature
        ``c_rel``, the least-squares slope, intercept and R² of the curve
        against depth, the regime label and the loads.

    Raises
    ------
    ValueError
        If fewer than three points remain, or a value is NaN or infinite.
    """
    if not linear_tol >= 0:
        raise ValueError(f"`linear_tol` must be >= 0, got {linear_tol}")
    values = _curve_values(curve, logits)
    if values.size < 3:
        raise ValueError(
            f"a load curve needs at least 3 points (2 loads) for its shape, got {values.size}"
        )
    if not np.all(np.isfinite(values)):
        raise ValueError(f"the load curve has NaN or infinite values: {values.tolist()}")
    loads = values[:-1] - values[1:]
    v = float(np.std(loads))
    c = float(loads[0] - loads[-1])
    scale = float(np.mean(np.abs(loads)))
    c_rel = c / scale if scale > 0 else 0.0
    if abs(c_rel) <= linear_tol:
        regime = "linear"
    else:
        regime = "concave" if c < 0 else "convex"
    depth = np.arange(values.size, dtype=np.float64)
    slope, intercept = np.polyfit(depth, values, 1)
    residual = values - (intercept + slope * depth)
    total = float(np.sum((values - values.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual**2)) / total if total > 0 else 1.0
    return LoadShape(
        v=v,
        c=c,
        c_rel=float(c_rel),
        slope=float(slope),
        intercept=float(intercept),
        r2=float(r2),
        regime=regime,
        loads=tuple(float(x) for x in loads),
    )
