"""Fit a spring–block chain to a whole training trajectory of load curves.

A final load curve's shape is close to one number (how concave it is), while
the chain has at least two (friction and noise): a concave curve can come
from high friction or from little shaking.  How the curve *got there* tells
them apart: friction holds the inner blocks back until the pull reaches
them, shaking moves them early.  :func:`fit_spring_block_trajectory` fits the
chain to every recorded curve of a run (or a cell's seed mean), not only to
the last.

**Start.**  The chain starts at rest: its curve is flat.  A network's
curve at its random initialisation is not (its deep layers start less
separated than its input, often by a lot), and no chain can rise above its
start.  So by default (``baseline="start"``) each point's first recorded
log D is subtracted from its later ones: what is fitted is the separation
each layer *gained* since the first record, the analogue of how far each
block has moved.  ``baseline=None`` fits the curves as measured.

**Scale.**  Both trajectories are mapped with one affine map each, fixed by
the *final* curve, as the final-curve fit maps its curve: the final curve's
input point goes to 1 and its last point to 0.  For the chain this is
``z_ℓ(t) = 1 − x_ℓ(t) / x_L(t_end)``; a chain at rest is the flat curve 1.

**Time.**  Training epoch ``e`` of a run of ``E`` epochs is chain time
``t = s · T · e / E`` (with ``baseline="start"``, epochs count from the
first record), ``T`` the simulated horizon, ``s`` in (0, 1] the
fitted time scale: a network that settles early in its training is a chain
that settled early in ``T``.  One factor is the simplest map that keeps the
order of events; how many epochs a run trains is the user's choice, so an
absolute epoch-to-time constant would not carry over between sweeps.  The
scale needs no new simulation: the chains are recorded densely and read at
the mapped times by linear interpolation.

**Residual.**  The root mean square difference of ``z`` over every recorded
time after the start and every point but the input (whose separation the
network does not learn).  The record at epoch 0 is left out: there the
chain is at rest by construction, so it adds the same misfit to every
parameter point.

**Method and uncertainty** follow :func:`~dnn_spring.spring.fit_spring_block`:
a coarse grid over (μ→, μ←/μ→, ε̄) times a grid of scales, simulated with
common random numbers in one batched call, then two local refinements; every
(parameter, scale) point within ``tolerance = max(RESIDUAL_FLOOR, 2 × the
seed standard error)`` of the best is accepted, and each parameter's
interval spans its accepted values (open at a searched edge).  The same
``identified`` rule applies.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np

from dnn_spring._checks import check_choice, check_range
from dnn_spring.spring._fit_common import (PARAMETERS, as_trajectory, UNIDENTIFIED_SHARE,
                                   _axes, _configs, _intervals, _local_grid, normalise_curve)
from dnn_spring.spring.first_order import simulate_first_order_batch
from dnn_spring.spring.langevin import simulate_langevin_batch

__all__ = ["fit_spring_block_trajectory", "TrajectoryFit", "as_trajectory", "sweep_scale", "SCALES"]

#: The smallest residual tolerance of a trajectory fit (normalised-curve units):
#: half the final-curve fit's, as a trajectory's residual averages over every time.
RESIDUAL_FLOOR = 0.01
#: Time scales s searched: the end of training is chain time s · T.
SCALES = np.geomspace(0.005, 1.0, 24)
# Chain positions are recorded at this many times over the horizon.
_RECORDS = 400


@dataclass(frozen=True)
class TrajectoryFit:
    """The chain that best reproduces a run's load curves over training.

    Attributes
    ----------
    mu_right, mu_left, noise, asymmetry : float
        Fitted friction thresholds, noise ε̄ and μ←/μ→.
    scale : float
        Fitted time scale ``s``: the end of training is chain time ``s · T``.
    epochs : numpy.ndarray of shape (n_times,)
        Times of the measured curves (epochs, or measurement indices).
    target : numpy.ndarray of shape (n_times, L + 1)
        The measured curves, logits dropped.
    curves : numpy.ndarray of shape (n_times, L + 1)
        The fitted chain's mean curves at the mapped times, on the measured
        curves' scale.
    residual, tolerance : float
        RMS difference of the normalised trajectories; points within
        ``residual + tolerance`` were accepted.
    final_residual : float
        The fitted chain's residual on the final curve alone (inner points),
        as :func:`~dnn_spring.spring.fit_spring_block` measures it.
    uncertainty, identified : dict
        Per parameter (``mu_right``, ``asymmetry``, ``noise``, ``scale``;
        ``uncertainty`` also ``mu_left``), as in the final-curve fit.
    order, n_blocks, n_seeds : int
    horizon : float
        ``T``, the simulated chain time.
    grid : pandas.DataFrame
        Every simulated parameter point with its best scale and residual.
    """

    mu_right: float
    mu_left: float
    noise: float
    asymmetry: float
    scale: float
    epochs: np.ndarray
    target: np.ndarray
    curves: np.ndarray
    residual: float
    tolerance: float
    final_residual: float
    uncertainty: dict
    identified: dict
    order: int
    n_blocks: int
    n_seeds: int
    horizon: float
    grid: object = field(repr=False)

    def as_dict(self) -> dict:
        """Parameters, residuals, intervals and identifiability as a flat dict."""
        out = {"mu_right": self.mu_right, "mu_left": self.mu_left, "noise": self.noise,
               "asymmetry": self.asymmetry, "scale": self.scale, "residual": self.residual,
               "final_residual": self.final_residual, "tolerance": self.tolerance,
               "order": self.order, "n_blocks": self.n_blocks, "n_times": int(len(self.epochs))}
        for name in (*PARAMETERS, "scale"):
            out[f"{name}_low"], out[f"{name}_high"] = self.uncertainty[name]
            out[f"{name}_identified"] = self.identified[name]
        return out


# --------------------------------------------------------------------------- inputs







def _prepared(trajectory, times, baseline) -> tuple:
    """Times, curves (measured), normalised target and fractions of training.

    A ``(times, curves)`` pair is taken apart."""
    if isinstance(trajectory, tuple) and len(trajectory) == 2 and times is None:
        times, trajectory = trajectory
    epochs, raw = as_trajectory(trajectory, times)
    if baseline == "start":
        target = normalise_trajectory(raw - raw[0])
        fractions = (epochs - epochs[0]) / (epochs[-1] - epochs[0])
    else:
        target = normalise_trajectory(raw)
        fractions = epochs / epochs[-1]
    return epochs, raw, target, fractions


def normalise_trajectory(curves) -> np.ndarray:
    """Curves mapped so that the *final* curve starts at 1 and ends at 0.

    Raises
    ------
    ValueError
        The final curve does not fall from its first to its last point.
    """
    curves = np.asarray(curves, dtype=np.float64)
    normalise_curve(curves[-1])  # checks the final curve
    first, last = curves[-1, 0], curves[-1, -1]
    return (curves - last) / (first - last)


# --------------------------------------------------------------------------- the chains

def _chain_positions(order: int, n_blocks: int, points, seeds: tuple, n_steps) -> tuple:
    """Positions (P, S, R, L) of every point's chains at R recorded times, and the times."""
    configs = _configs(order, n_blocks, points, n_steps)
    batch = [c for c in configs for _ in seeds]
    seed_list = [s for _ in configs for s in seeds]
    if order == 1:
        steps = batch[0].n_steps
        result = simulate_first_order_batch(batch, seed=seed_list,
                                            record_every=max(1, steps // _RECORDS))
    else:
        steps = int(round(batch[0].t_max / batch[0].dt))
        result = simulate_langevin_batch(batch, seed=seed_list,
                                         record_every=max(1, steps // _RECORDS))
    x = result.trajectory.reshape(len(configs), len(seeds), *result.trajectory.shape[1:])
    return x / np.array([c.y for c in configs])[:, None, None, None], result.times


def _interpolate(x, times, query) -> np.ndarray:
    """``x`` (..., R, L) read at ``query`` times (S, n) by linear interpolation: (..., S, n, L)."""
    q = np.clip(query, times[0], times[-1])
    hi = np.clip(np.searchsorted(times, q, side="left"), 1, len(times) - 1)
    lo = hi - 1
    w = ((q - times[lo]) / (times[hi] - times[lo]))[..., None]
    return x[..., lo, :] * (1.0 - w) + x[..., hi, :] * w


def _normalised_chain(x, times, fractions, scales) -> np.ndarray:
    """Chain curves z (..., S, n, L + 1) at epochs ``fractions`` of training, per scale."""
    horizon = times[-1]
    at = _interpolate(x, times, scales[:, None] * horizon * fractions[None, :])
    end = _interpolate(x, times, scales[:, None] * horizon)[..., -1:, -1:]  # x_L at s·T
    end = np.where(end > 1e-12, end, np.nan)
    wall = np.zeros(at.shape[:-1] + (1,))
    return 1.0 - np.concatenate([wall, at], axis=-1) / end


@functools.lru_cache(maxsize=4)
def _coarse(order: int, n_blocks: int, seeds: tuple, n_steps, asymmetry) -> tuple:
    """The coarse grid's points and chain positions, computed once per process."""
    points = np.array(list(itertools.product(*_axes(order, asymmetry))))
    return (points, *_chain_positions(order, n_blocks, points, seeds, n_steps))


def _score(x, times, fractions, target, scales) -> tuple:
    """Residuals (P, S), seed standard errors (P, S) and mean chain curves (P, S, n, L+1)."""
    mean = _normalised_chain(x.mean(1), times, fractions, scales)
    used = (slice(None), slice(None), fractions > 0, slice(1, None))
    diff = mean[used] - target[fractions > 0, 1:]
    residual = np.sqrt(np.mean(diff**2, axis=(-2, -1)))
    residual = np.where(np.isfinite(residual), residual, np.inf)
    if x.shape[1] > 1:
        each = _normalised_chain(np.moveaxis(x, 1, 0), times, fractions, scales)
        with warnings.catch_warnings():  # a chain that never moved has no curve: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            sem = np.nanstd(each, axis=0) / (x.shape[1] - 1) ** 0.5
            sem = np.sqrt(np.nanmean(sem[used] ** 2, axis=(-2, -1)))
    else:
        sem = np.zeros_like(residual)
    return residual, sem, mean


def fit_spring_block_trajectory(trajectory, *, times=None, order: int = 1, seed: int = 0,
                                n_seeds: int = 4, n_steps: "int | None" = None,
                                asymmetry: "float | None" = None,
                                scale: "float | str" = "fit",
                                baseline: "str | None" = "start") -> TrajectoryFit:
    """Fit the chain's friction, noise and a time scale to load curves over training.

    Parameters
    ----------
    trajectory : dict, pandas.DataFrame or array-like of shape (n_times, n_points)
        See :func:`as_trajectory`: a run record with a trajectory, a tracker's
        history, or the curves themselves (input first, no logits).
    times : array-like, optional
        Times of an array's rows (default ``0, 1, ...``).
    order, seed, n_seeds, n_steps, asymmetry
        As in :func:`~dnn_spring.spring.fit_spring_block`.
    scale : float or "fit", default="fit"
        The time scale ``s`` in (0, 1]: fitted over :data:`SCALES`, or held
        at this value (the end of training is chain time ``s · T``).  The
        clock trades with friction and noise (a slow chain with more
        friction can look like a fast one with less), so a free scale often
        leaves both unidentified; holding it (one clock for every run of a
        sweep, see :func:`sweep_scale`) is what pins them down.
    baseline : "start" or None, default="start"
        Fit the separation gained since the first record (each point's first
        value subtracted), or the curves as measured.

    Returns
    -------
    TrajectoryFit

    Raises
    ------
    ValueError
        An unusable trajectory (see :func:`as_trajectory`), a final curve that
        does not fall, or a bad argument.
    """
    import pandas as pd

    check_choice("order", order, (1, 2))
    check_range("n_seeds", n_seeds, 1)
    if asymmetry is not None:
        check_range("asymmetry", float(asymmetry), 0.0, lo_open=True)
        asymmetry = float(asymmetry)
    if n_steps is not None:
        check_range("n_steps", n_steps, 1)
    if scale == "fit":
        scales = SCALES
    elif isinstance(scale, str):
        raise ValueError(f'`scale` must be "fit" or a number in (0, 1], got {scale!r}')
    else:
        check_range("scale", float(scale), 0.0, 1.0, lo_open=True)
        scales = np.array([float(scale)])
    check_choice("baseline", baseline, ("start", None))
    epochs, raw, target, fractions = _prepared(trajectory, times, baseline)
    n_blocks = raw.shape[1] - 1
    seeds = tuple(int(seed) + i for i in range(int(n_seeds)))
    points, x, chain_times = _coarse(order, n_blocks, seeds, n_steps, asymmetry)
    found = [(points, *_score(x, chain_times, fractions, target, scales))]
    steps = np.array([a[1] / a[0] if a.size > 1 else 1.0 for a in _axes(order, asymmetry)])
    for _ in range(2):  # refine around the best point, as the final-curve fit does
        all_points = np.concatenate([f[0] for f in found])
        best = all_points[np.argmin(np.concatenate([f[1].min(1) for f in found]))]
        local = _local_grid(best, steps, order)
        x, _ = _chain_positions(order, n_blocks, local, seeds, n_steps)
        found.append((local, *_score(x, chain_times, fractions, target, scales)))
        steps = steps ** (1 / 3)
    points = np.concatenate([f[0] for f in found])
    residual = np.concatenate([f[1] for f in found])  # (P, S)
    sem = np.concatenate([f[2] for f in found])
    i, j = np.unravel_index(int(np.argmin(residual)), residual.shape)
    fitted = np.concatenate([f[3][:, j] for f in found])[i]  # (n_times, L + 1)
    tolerance = max(RESIDUAL_FLOOR, 2.0 * float(sem[i, j]))
    accepted = residual <= residual[i, j] + tolerance  # (P, S)
    uncertainty, identified = _intervals(points, accepted.any(1), order, asymmetry)
    uncertainty["scale"], identified["scale"] = (
        _scale_interval(accepted.any(0)) if scale == "fit" else ((scales[0], scales[0]), None))
    mu, asym, eps = (float(v) for v in points[i])
    final_residual = float(np.sqrt(np.mean((fitted[-1, 1:-1] - target[-1, 1:-1]) ** 2)))
    start = raw[0] if baseline == "start" else np.zeros(raw.shape[1])
    span = (raw[-1, 0] - start[0]) - (raw[-1, -1] - start[-1])
    curves = fitted * span + (raw[-1, -1] - start[-1]) + start  # on the measured scale
    horizon = chain_times[-1]
    grid = pd.DataFrame(points, columns=list(PARAMETERS)).assign(
        scale=scales[residual.argmin(1)], residual=residual.min(1), accepted=accepted.any(1))
    return TrajectoryFit(mu_right=mu, mu_left=mu * asym, noise=eps, asymmetry=asym,
                         scale=float(scales[j]), epochs=epochs, target=raw,
                         curves=curves, residual=float(residual[i, j]),
                         tolerance=tolerance, final_residual=final_residual,
                         uncertainty=uncertainty, identified=identified, order=order,
                         n_blocks=n_blocks, n_seeds=len(seeds), horizon=float(horizon),
                         grid=grid)


def _scale_interval(accepted) -> tuple:
    step = SCALES[1] / SCALES[0]
    values = SCALES[accepted]
    at_edge = bool(accepted[0]), bool(accepted[-1])
    low = 0.0 if at_edge[0] else float(values.min() / step)
    high = float(SCALES[-1]) if at_edge[1] else float(min(values.max() * step, SCALES[-1]))
    share = np.log(min(high, SCALES[-1]) / max(low, SCALES[0])) / np.log(SCALES[-1] / SCALES[0])
    # s = 1 is the end of the simulated horizon, a bound of the search, not of the data
    return (low, high), bool(not at_edge[0] and share < UNIDENTIFIED_SHARE)



def sweep_scale(trajectories, *, order: int = 1, seed: int = 0, n_seeds: int = 4,
                n_steps: "int | None" = None, asymmetry: "float | None" = None,
                baseline: "str | None" = "start") -> tuple:
    """One clock for several runs: the scale of :data:`SCALES` that fits them best together.

    Every run of a sweep trains for the same epochs with the same optimiser
    schedule, so they share one map from epochs to chain time; fitting it per
    run would let each run trade its clock against friction and noise.

    Parameters
    ----------
    trajectories : sequence
        Anything :func:`as_trajectory` takes, or ``(times, curves)`` pairs,
        one per run (or cell).
    order, seed, n_seeds, n_steps, asymmetry, baseline
        As in :func:`fit_spring_block_trajectory`.

    Returns
    -------
    tuple
        ``(scale, profile)``: the chosen scale and, per scale of
        :data:`SCALES`, the summed best coarse-grid residual over the runs.

    Raises
    ------
    ValueError
        No trajectory, or one that :func:`as_trajectory` refuses.
    """
    check_choice("order", order, (1, 2))
    trajectories = list(trajectories)
    if not trajectories:
        raise ValueError("`trajectories` must hold at least one trajectory")
    seeds = tuple(int(seed) + i for i in range(int(n_seeds)))
    profile = np.zeros(len(SCALES))
    for item in trajectories:
        _, raw, target, fractions = _prepared(item, None, baseline)
        _, x, chain_times = _coarse(order, raw.shape[1] - 1, seeds, n_steps,
                                    None if asymmetry is None else float(asymmetry))
        residual = _score(x, chain_times, fractions, target, SCALES)[0]
        profile += residual.min(0)
    return float(SCALES[int(np.argmin(profile))]), profile
