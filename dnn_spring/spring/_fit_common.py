"""What the final-curve and the trajectory fits share: the grids, the intervals, the inputs.

Internal to :mod:`dnn_spring.spring`; the public names are re-exported by
:mod:`~dnn_spring.spring.fit` and :mod:`~dnn_spring.spring.fit_trajectory`.
"""

from __future__ import annotations

import itertools

import numpy as np

from dnn_spring.spring.config import FirstOrderConfig, LangevinConfig

#: The fitted parameters, in the order of the grid axes.
PARAMETERS = ("mu_right", "asymmetry", "noise")


#: Accepted values covering this share of a parameter's log-range: not identified.
UNIDENTIFIED_SHARE = 0.6


# Coarse grids per chain order: μ→, μ←/μ→ and ε̄ (relative to the spring force
# k·y / L of a straight chain; the Langevin chain's k is 0.1 by default).
_GRIDS = {
    1: (np.geomspace(0.005, 1.0, 12), np.geomspace(0.25, 4.0, 9),
        np.geomspace(0.005, 1.6, 12)),
    2: (np.geomspace(0.0003, 0.05, 10), np.geomspace(0.25, 4.0, 7),
        np.geomspace(0.0003, 0.05, 10)),
}


def normalise_curve(curve) -> np.ndarray:
    """``(c − c_last) / (c_first − c_last)``: the curve starts at 1 and ends at 0.

    Raises
    ------
    ValueError
        The curve has fewer than 3 points, non-finite values, or equal ends.
    """
    c = np.asarray(curve, dtype=np.float64)
    if c.ndim != 1 or c.size < 3:
        raise ValueError(f"`curve` must have at least 3 points, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError(f"`curve` must be finite, got {np.round(c, 4).tolist()}")
    span = c[0] - c[-1]
    if abs(span) < 1e-12 * max(1.0, float(np.abs(c).max())):
        raise ValueError("`curve` must have different first and last values (its shape is "
                         "measured between them)")
    if span < 0:
        raise ValueError(f"`curve` must fall from its first to its last point, as a chain's "
                         f"does, got {c[0]:.4g} then {c[-1]:.4g}")
    return (c - c[-1]) / span


def _configs(order: int, n_blocks: int, points: np.ndarray, n_steps: "int | None") -> list:
    out = []
    for mu, asym, eps in points:
        common = {"n_blocks": n_blocks, "mu_right": float(mu), "mu_left": float(mu * asym),
                  "noise": float(eps)}
        if order == 1:
            out.append(FirstOrderConfig(**common, **({"n_steps": n_steps} if n_steps else {})))
        else:
            extra = {"t_max": n_steps * LangevinConfig.dt} if n_steps else {}
            out.append(LangevinConfig(**common, **extra))
    return out


def _axes(order: int, asymmetry: "float | None") -> tuple:
    mu, asym, eps = _GRIDS[order]
    return mu, (asym if asymmetry is None else np.array([float(asymmetry)])), eps


def _local_grid(best: np.ndarray, steps: np.ndarray, order: int) -> np.ndarray:
    """5 × 5 × 5 points around ``best`` spanning one coarse step (log scale) each way
    (one point along a fixed asymmetry)."""
    axes = [best[i] * steps[i] ** np.linspace(-1, 1, 5 if steps[i] > 1 else 1)
            for i in range(3)]
    axes = [a if a.size == 1 else np.clip(a, g.min(), g.max())
            for a, g in zip(axes, _GRIDS[order])]
    return np.array(list(itertools.product(*axes)))


def _intervals(points, accepted, order, asymmetry) -> tuple:
    uncertainty, identified = {}, {}
    for i, name in enumerate(PARAMETERS):
        axis = _axes(order, asymmetry)[i]
        if axis.size == 1:  # held fixed
            uncertainty[name], identified[name] = (float(axis[0]), float(axis[0])), None
            continue
        step = axis[1] / axis[0]
        values = points[accepted, i]
        at_edge = np.isclose(values.min(), axis[0]), np.isclose(values.max(), axis[-1])
        low = 0.0 if at_edge[0] else float(values.min() / step)
        high = float("inf") if at_edge[1] else float(values.max() * step)
        uncertainty[name] = (low, high)
        share = np.log(min(high, axis[-1]) / max(low, axis[0])) / np.log(axis[-1] / axis[0])
        identified[name] = bool(not any(at_edge) and share < UNIDENTIFIED_SHARE)
    left = points[accepted, 0] * points[accepted, 1]
    step = _GRIDS[order][0][1] / _GRIDS[order][0][0]
    low = 0.0 if uncertainty["mu_right"][0] == 0.0 else float(left.min() / step)
    high = float("inf") if uncertainty["mu_right"][1] == float("inf") else float(left.max() * step)
    uncertainty["mu_left"] = (low, high)
    return uncertainty, identified


def _from_record(record: dict) -> tuple:
    points = record.get("trajectory")
    if isinstance(points, str):
        import json

        points = json.loads(points) if points.strip() else []
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise ValueError('`trajectory` record must hold a list of {"epoch": ..., "log_d": [...]} '
                         "(train with curve_every > 0)")
    rows = [(p.get("epoch"), p.get("log_d")) for p in points if p.get("log_d")]
    lengths = {len(c) for _, c in rows}
    if len(lengths) > 1:
        raise ValueError(f"`trajectory` curves differ in length: {sorted(lengths)}")
    times = np.array([np.nan if e is None else e for e, _ in rows], dtype=np.float64)
    curves = np.array([[np.nan if v is None else v for v in c[:-1]] for _, c in rows],
                      dtype=np.float64).reshape(len(rows), -1)  # the logits point dropped
    return times, curves


def _from_history(frame) -> tuple:
    """A tracker's history: one row per measurement and point."""
    needed = {"measurement", "point", "log_d"}
    if not needed <= set(frame.columns):
        raise ValueError(f"`trajectory` frame must have the columns {sorted(needed)} "
                         f"(a LoadCurveTracker history), got {list(frame.columns)}")
    keep = frame[~frame["is_logits"].astype(bool)] if "is_logits" in frame.columns else frame
    table = keep.pivot_table(index="measurement", columns="point", values="log_d",
                             aggfunc="first").sort_index()
    x = next((c for c in ("epoch", "step") if c in keep.columns), None)
    times = (keep.groupby("measurement")[x].first().reindex(table.index).to_numpy(float)
             if x is not None else np.arange(len(table), dtype=np.float64))
    return times, table.to_numpy(dtype=np.float64)


def as_trajectory(trajectory, times=None) -> tuple:
    """``(times (n,), curves (n, L + 1))`` from a record, a tracker history or an array.

    Parameters
    ----------
    trajectory : dict, pandas.DataFrame or array-like of shape (n_times, n_points)
        A run record with a ``trajectory`` (``curve_every > 0``; each curve's
        last point, the logits, is dropped); a
        :class:`~dnn_spring.capture.LoadCurveTracker` ``history`` (its logits rows
        dropped, times from its ``epoch`` or ``step`` column); or the log D
        values themselves, input first, no logits, one row per time.
    times : array-like of shape (n_times,), optional
        Times of the rows of an array (default ``0, 1, ...``); ignored for a
        record or a history, which carry their own.

    Returns
    -------
    tuple of numpy.ndarray
        Times (increasing) and curves; rows with a missing value are dropped.

    Raises
    ------
    ValueError
        Fewer than 2 usable curves, fewer than 3 points, or times that do not
        increase.
    """
    if isinstance(trajectory, dict):
        t, curves = _from_record(trajectory)
    elif hasattr(trajectory, "columns"):
        t, curves = _from_history(trajectory)
    else:
        curves = np.asarray(trajectory, dtype=np.float64)
        if curves.ndim != 2:
            raise ValueError(f"`trajectory` must have shape (n_times, n_points), got "
                             f"{curves.shape}")
        t = (np.arange(len(curves), dtype=np.float64) if times is None
             else np.asarray(times, dtype=np.float64))
        if t.shape != (len(curves),):
            raise ValueError(f"`times` must have one value per curve ({len(curves)}), got "
                             f"shape {t.shape}")
    usable = np.isfinite(t) & np.all(np.isfinite(curves), axis=1)
    t, curves = t[usable], curves[usable]
    if len(t) < 2:
        raise ValueError(f"`trajectory` must hold at least 2 finite load curves, got {len(t)}")
    if curves.shape[1] < 3:
        raise ValueError(f"`trajectory` curves must have at least 3 points, got {curves.shape[1]}")
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"`trajectory` times must increase, got {t.tolist()}")
    if t[0] < 0:
        raise ValueError(f"`trajectory` times must be >= 0 (epochs), got {t[0]:g} first")
    return t, curves


