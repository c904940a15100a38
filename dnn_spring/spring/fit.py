"""Fit a spring–block chain to a measured load curve.

:func:`fit_spring_block` finds the friction pair (μ→ and the asymmetry
μ←/μ→) and the noise ε̄ of the chain whose mean load curve has the shape of
a measured one.  The chain has ``L = len(curve) − 1`` blocks, so its curve
``y − x_ℓ``, ``ℓ = 0..L``, has as many points as the measured one.

**Shape, not scale.**  Log D and the chain's distance to go live on
different scales, so both curves are mapped affinely to start at 1 and end
at 0: ``(c − c_last) / (c_first − c_last)``.  The residual is the root mean
square difference of the two normalised curves over the inner points.  The
fitted curve is reported on the measured curve's scale (the inverse map).

**Method.**  A coarse grid over (μ→, μ←/μ→, ε̄), every point simulated for
``n_seeds`` seeds, all in one batched call of the vectorised simulator (the
grid depends only on L, so it is computed once per process and reused for
every curve of that length); the target is the seed mean.  Then a local
refinement: a finer grid around the best coarse point, twice, one batched
call each.  Every simulation uses the same seeds (common random numbers), so
the residual is a deterministic function of the parameters.

**Uncertainty.**  Every simulated point whose residual is within
``tolerance`` of the best is accepted, ``tolerance = max(RESIDUAL_FLOOR,
2 × the seed standard error of the best point's mean curve)``.  A
parameter's interval spans its accepted values, widened by one coarse grid
step on each side; a side whose accepted values reach the end of the
searched range is open (0 or inf): the curve does not bound it there.  A
parameter is ``identified`` when its interval is closed and covers less
than :data:`UNIDENTIFIED_SHARE` of the grid's log-range; otherwise the fit
says it cannot be told from the curve, instead of a false precision.  A
straight curve, for instance, fixes only "noise at least comparable to
friction", and a very lazy one only "friction at least so much".  A
parameter held fixed (``asymmetry=``) has the interval (value, value) and
``identified`` None.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field

import numpy as np

from dnn_spring._checks import check_choice, check_range
from dnn_spring.spring._fit_common import (  # noqa: F401 - also this module's names
    _GRIDS, PARAMETERS, UNIDENTIFIED_SHARE, _axes, _configs, _intervals, _local_grid,
    normalise_curve)
from dnn_spring.spring.first_order import simulate_first_order_batch
from dnn_spring.spring.langevin import simulate_langevin_batch
from dnn_spring.spring.result import chain_curve

__all__ = ["fit_spring_block", "SpringBlockFit", "normalise_curve", "PARAMETERS"]

#: The smallest residual tolerance (in units of the normalised curve).
RESIDUAL_FLOOR = 0.02


@dataclass(frozen=True)
class SpringBlockFit:
    """The chain that best reproduces a load curve's shape.

    Attributes
    ----------
    mu_right, mu_left, noise : float
        Fitted friction thresholds μ→, μ← and noise ε̄.
    asymmetry : float
        μ←/μ→.
    curve : numpy.ndarray of shape (L + 1,)
        The fitted chain's mean curve on the measured curve's scale, as long
        as ``target``: the input curve, or a record's or frame's curve
        without its logits point.
    target : numpy.ndarray of shape (L + 1,)
        The measured curve that was fitted.
    residual : float
        RMS difference of the normalised curves (inner points).
    tolerance : float
        Residuals up to ``residual + tolerance`` were accepted.
    uncertainty : dict
        ``{parameter: (low, high)}`` over the accepted points, for
        ``mu_right``, ``asymmetry``, ``noise`` and ``mu_left``.
    identified : dict
        ``{parameter: bool or None}``; False when the curve does not pin it
        down, None when it was held fixed.
    order, n_blocks, n_seeds : int
    grid : pandas.DataFrame
        Every simulated point: parameters, residual, accepted.
    """

    mu_right: float
    mu_left: float
    noise: float
    asymmetry: float
    curve: np.ndarray
    target: np.ndarray
    residual: float
    tolerance: float
    uncertainty: dict
    identified: dict
    order: int
    n_blocks: int
    n_seeds: int
    grid: object = field(repr=False)

    def as_dict(self) -> dict:
        """Parameters, residual, intervals and identifiability as a flat dict."""
        out = {"mu_right": self.mu_right, "mu_left": self.mu_left, "noise": self.noise,
               "asymmetry": self.asymmetry, "residual": self.residual,
               "tolerance": self.tolerance, "order": self.order, "n_blocks": self.n_blocks}
        for name in PARAMETERS:
            out[f"{name}_low"], out[f"{name}_high"] = self.uncertainty[name]
            out[f"{name}_identified"] = self.identified[name]
        return out




def _as_curve(curve) -> np.ndarray:
    """log D values from a load_curve DataFrame or a run record (logits point dropped),
    or an array (used as given)."""
    if isinstance(curve, dict):
        values = curve.get("log_d")
        if values is None or np.ndim(values) != 1 or len(values) == 0:
            raise ValueError("`curve` record must have a non-empty 'log_d' list")
        curve = list(values)[:-1]
    elif hasattr(curve, "columns"):
        if "log_d" not in curve.columns:
            raise ValueError("`curve` DataFrame must have a 'log_d' column (a load_curve frame)")
        if "is_logits" in curve.columns:
            curve = curve.loc[~curve["is_logits"].astype(bool), "log_d"].to_numpy()
        else:
            curve = curve["log_d"].to_numpy()[:-1]
    if np.ndim(curve) != 1:
        raise ValueError(f"`curve` must be one curve (1-D), got shape {np.shape(curve)}")
    return np.asarray([np.nan if v is None else v for v in curve], dtype=np.float64)




def _simulate(order: int, n_blocks: int, points: np.ndarray, seeds: tuple,
              n_steps: "int | None") -> np.ndarray:
    """Normalised mean curves (P, L + 1) and the seed noise (P,) of parameter points (P, 3)."""
    configs = _configs(order, n_blocks, points, n_steps)
    batch = [c for c in configs for _ in seeds]
    seed_list = [s for _ in configs for s in seeds]
    if order == 1:
        result = simulate_first_order_batch(batch, seed=seed_list,
                                            record_every=batch[0].n_steps)
    else:
        steps = int(round(batch[0].t_max / batch[0].dt))
        result = simulate_langevin_batch(batch, seed=seed_list, record_every=steps)
    y = np.array([c.y for c in batch])
    curves = chain_curve(result.final, y).reshape(len(configs), len(seeds), n_blocks + 1)
    mean = curves.mean(1)
    span = mean[:, :1] - mean[:, -1:]
    span = np.where(np.abs(span) < 1e-12, np.nan, span)
    normalised = (mean - mean[:, -1:]) / span
    sem = (curves.std(1) / max(1, len(seeds) - 1) ** 0.5) / np.abs(span)
    return normalised, np.sqrt(np.nanmean(sem[:, 1:-1] ** 2, axis=1))




@functools.lru_cache(maxsize=8)
def _coarse(order: int, n_blocks: int, seeds: tuple, n_steps: "int | None",
            asymmetry: "float | None") -> tuple:
    points = np.array(list(itertools.product(*_axes(order, asymmetry))))
    curves, noise = _simulate(order, n_blocks, points, seeds, n_steps)
    return points, curves, noise


def _residuals(curves: np.ndarray, target: np.ndarray) -> np.ndarray:
    diff = curves[:, 1:-1] - target[1:-1]
    out = np.sqrt(np.mean(diff**2, axis=1))
    return np.where(np.isfinite(out), out, np.inf)






def _is_trajectory(curve, trajectory) -> bool:
    if trajectory is not None:
        return bool(trajectory)
    if hasattr(curve, "columns"):  # a tracker's history has one row per measurement and point
        return "measurement" in curve.columns
    return not isinstance(curve, dict) and np.ndim(curve) == 2


def fit_spring_block(curve, *, order: int = 1, seed: int = 0, n_seeds: int = 4,
                     n_steps: "int | None" = None, asymmetry: "float | None" = None,
                     trajectory: "bool | None" = None, times=None, scale="fit"):
    """Fit the chain's friction pair and noise to a measured load curve's shape.

    Given a trajectory (a 2-D array, a tracker's history, or a record with
    ``trajectory=True``) it fits the whole course of training instead:
    :func:`~dnn_spring.spring.fit_spring_block_trajectory`, which returns a
    :class:`~dnn_spring.spring.TrajectoryFit`.

    Parameters
    ----------
    curve : pandas.DataFrame, dict or array-like
        A :func:`~dnn_spring.capture.load_curve` frame (its ``log_d`` column) or a
        run record (its ``log_d`` list), whose last point, the logits, is
        dropped: the chain's curve has no logits point (a depth-8 network's
        8 points before the logits give the 7-block chain of docs/science.md#chains).  Or
        the log D values themselves, input first, used as given.
        ``L = len(curve) − 1`` blocks (after dropping the logits).
    order : {1, 2}, default=1
        The first-order chain (docs/science.md#chains defaults: k = 1, η = 0.01) or the
        Langevin chain (its defaults: k = 0.1, dt = 0.05).
    seed : int, default=0
        The chains use seeds ``seed .. seed + n_seeds − 1``.
    n_seeds : int, default=4
        Chains averaged per parameter point.
    n_steps : int, optional
        Steps per chain (default: the config's, 10,000 for order 1, 14,000
        for order 2).
    asymmetry : float, optional
        Hold μ←/μ→ at this value and fit μ→ and ε̄ only (e.g. 1.0 for
        symmetric friction); default: fit it too, over [0.25, 4].
    trajectory : bool, optional
        Fit the load curves over training.  Default: yes for a 2-D array
        (one row per time) or a tracker's ``history`` frame, no for a record
        (True fits its ``trajectory``) or a 1-D curve.
    times, scale
        For a trajectory only: see
        :func:`~dnn_spring.spring.fit_spring_block_trajectory`.

    Returns
    -------
    SpringBlockFit, or TrajectoryFit for a trajectory

    Raises
    ------
    ValueError
        A curve with fewer than 3 points, non-finite values or equal ends;
        a bad ``order``, ``n_seeds`` or ``n_steps``.
    """
    if _is_trajectory(curve, trajectory):
        from dnn_spring.spring.fit_trajectory import fit_spring_block_trajectory

        return fit_spring_block_trajectory(curve, times=times, order=order, seed=seed,
                                           n_seeds=n_seeds, n_steps=n_steps,
                                           asymmetry=asymmetry, scale=scale)
    check_choice("order", order, (1, 2))
    check_range("n_seeds", n_seeds, 1)
    if asymmetry is not None:
        check_range("asymmetry", float(asymmetry), 0.0, lo_open=True)
    if n_steps is not None:
        check_range("n_steps", n_steps, 1)
    target_raw = _as_curve(curve)
    target = normalise_curve(target_raw)  # and checks it
    n_blocks = len(target) - 1
    seeds = tuple(int(seed) + i for i in range(int(n_seeds)))
    points, curves, noise = _coarse(order, n_blocks, seeds, n_steps,
                                    None if asymmetry is None else float(asymmetry))
    residuals = _residuals(curves, target)
    steps = np.array([a[1] / a[0] if a.size > 1 else 1.0 for a in _axes(order, asymmetry)])
    all_points, all_curves, all_noise = [points], [curves], [noise]
    best = points[np.argmin(residuals)]
    for _ in range(2):  # refine: one coarse step each way, then a third of it
        local = _local_grid(best, steps, order)
        local_curves, local_noise = _simulate(order, n_blocks, local, seeds, n_steps)
        all_points.append(local)
        all_curves.append(local_curves)
        all_noise.append(local_noise)
        residuals = np.concatenate([residuals, _residuals(local_curves, target)])
        best = np.concatenate(all_points)[np.argmin(residuals)]
        steps = steps ** (1 / 3)  # a fixed axis keeps its step of 1
    points, noise = np.concatenate(all_points), np.concatenate(all_noise)
    i = int(np.argmin(residuals))
    tolerance = max(RESIDUAL_FLOOR, 2.0 * float(noise[i]))
    accepted = residuals <= residuals[i] + tolerance
    uncertainty, identified = _intervals(points, accepted, order, asymmetry)
    mu, asym, eps = (float(v) for v in points[i])
    fitted = np.concatenate(all_curves)[i]  # every chain has its own stream: as if run alone
    scale = target_raw[0] - target_raw[-1]
    import pandas as pd

    grid = pd.DataFrame(points, columns=list(PARAMETERS)).assign(residual=residuals,
                                                                 accepted=accepted)
    return SpringBlockFit(mu_right=mu, mu_left=mu * asym, noise=eps, asymmetry=asym,
                          curve=fitted * scale + target_raw[-1], target=target_raw,
                          residual=float(residuals[i]), tolerance=tolerance,
                          uncertainty=uncertainty, identified=identified, order=order,
                          n_blocks=n_blocks, n_seeds=len(seeds), grid=grid)
