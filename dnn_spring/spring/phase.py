"""The spring–block phase diagram: friction × noise (docs/science.md#chains).

Friction plays nonlinearity and noise plays training noise.  The friction
axis sets ``μ→ = μ`` and ``μ← = μ + δ`` with a fixed asymmetry ``δ``: noise
turns the asymmetry into a ratchet, a mean push to the right of about ``δ/2``
on every block that stretches the shallow springs (convex curve).  Keeping
``δ`` fixed rather than ``μ←/μ→`` keeps that ratchet alive at low friction,
which is what produces the convex corner (low friction, high noise) opposite
the concave one (high friction, low noise), with the linear band between.

Every cell runs ``n_seeds`` chains; the cell's curve is the seed mean of the
final curves ``y − x_ℓ``, and its statistics are those of the mean curve (as
the DNN figure averages load curves over seeds).
"""

from __future__ import annotations

import numpy as np

from dnn_spring._checks import check_range
from dnn_spring.metrics._shape import load_shape
from dnn_spring.spring.config import FirstOrderConfig, LangevinConfig
from dnn_spring.spring.first_order import simulate_first_order_batch
from dnn_spring.spring.langevin import simulate_langevin_batch
from dnn_spring.spring.result import chain_curve, evenness

__all__ = ["PHASE_DEFAULTS", "TRAJECTORY_SETTINGS", "scan_phase_diagram", "trajectory_configs"]

#: Default scan per chain order: friction values μ→ (high first: the top row),
#: noise values (high first: the left column) and the asymmetry δ = μ← − μ→.
PHASE_DEFAULTS = {
    2: {
        "friction": tuple(np.geomspace(3e-2, 3e-4, 8).round(6)),
        "noise": tuple(np.geomspace(2e-2, 5e-4, 8).round(6)),
        "asymmetry": 0.004,
    },
    1: {
        "friction": tuple(np.geomspace(0.3, 3e-3, 8).round(6)),
        "noise": tuple(np.geomspace(1.0, 1e-2, 8).round(6)),
        "asymmetry": 0.05,
    },
}

#: A lazy (high friction, little noise) and an active (noisy) setting of each
#: chain, as field overrides, for the trajectory figure.
TRAJECTORY_SETTINGS = {
    2: {
        "lazy": {"mu_right": 0.02, "mu_left": 0.025, "noise": 0.001},
        "active": {"mu_right": 0.001, "mu_left": 0.006, "noise": 0.01},
    },
    1: {
        "lazy": {"mu_right": 0.2, "mu_left": 0.25, "noise": 0.01},
        "active": {"mu_right": 0.01, "mu_left": 0.06, "noise": 0.3},
    },
}


def _axis(name, values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"`{name}` must be a non-empty list of numbers >= 0, got {values.tolist()}")
    return values


def trajectory_configs(base=None):
    """The lazy and active configurations derived from ``base``.

    Parameters
    ----------
    base : LangevinConfig or FirstOrderConfig, optional
        Default ``LangevinConfig()``.

    Returns
    -------
    dict
        ``{"lazy": config, "active": config}``.
    """
    base = LangevinConfig() if base is None else base
    return {name: base.replace(**fields) for name, fields in TRAJECTORY_SETTINGS[base.order].items()}


def scan_phase_diagram(base=None, *, friction=None, noise=None, asymmetry=None, n_seeds=4,
                       seed=0, backend="numpy", device=None):
    """Final load curves of chains over a friction × noise grid.

    Parameters
    ----------
    base : LangevinConfig or FirstOrderConfig, optional
        Every other field; default ``LangevinConfig()`` (the reference SDE).
    friction : sequence of float, optional
        Values of μ→ (rows, listed top to bottom); default
        ``PHASE_DEFAULTS[order]["friction"]``.
    noise : sequence of float, optional
        Noise amplitudes ε (columns, left to right); default high to low.
    asymmetry : float, optional
        δ, with ``μ← = μ→ + δ``; default ``PHASE_DEFAULTS[order]["asymmetry"]``.
    n_seeds : int, default=4
        Chains per cell.
    seed : int, default=0
        Seeds of the ``rows·cols·n_seeds`` chains come from
        ``SeedSequence(seed).spawn``.
    backend : {"numpy", "torch", "sdeint"}, default="numpy"
        Second-order chain only; the first-order chain always uses numpy.
    device : str, optional
        torch device.

    Returns
    -------
    pandas.DataFrame
        One row per cell: ``row``, ``col``, ``mu_right``, ``mu_left``,
        ``noise``, ``n_seeds``, ``curve`` (seed-mean ``y − x_ℓ``, list),
        ``curve_std``, ``loads``, the :class:`~dnn_spring.metrics.LoadShape` fields
        (``v``, ``c``, ``c_rel``, ``slope``, ``intercept``, ``r2``,
        ``regime``), ``evenness`` and ``order``.
    """
    import pandas as pd

    base = LangevinConfig() if base is None else base
    if not isinstance(base, (LangevinConfig, FirstOrderConfig)):
        raise TypeError(f"`base` must be a LangevinConfig or FirstOrderConfig, got {type(base).__name__}")
    defaults = PHASE_DEFAULTS[base.order]
    friction = _axis("friction", defaults["friction"] if friction is None else friction)
    noise = _axis("noise", defaults["noise"] if noise is None else noise)
    delta = float(defaults["asymmetry"] if asymmetry is None else asymmetry)
    check_range("asymmetry", delta, 0)
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, (int, np.integer)) or n_seeds < 1:
        raise ValueError(f"`n_seeds` must be an integer >= 1, got {n_seeds!r}")
    configs = [base.replace(mu_right=float(mu), mu_left=float(mu + delta), noise=float(eps))
               for mu in friction for eps in noise for _ in range(n_seeds)]
    if base.order == 2:
        batch = simulate_langevin_batch(configs, backend=backend, seed=seed,
                                        record_every=base.n_steps, device=device)
    else:
        batch = simulate_first_order_batch(configs, seed=seed, record_every=base.n_steps)
    curves = chain_curve(batch.final, base.y).reshape(friction.size, noise.size, n_seeds, -1)
    rows = [_cell(i, j, mu, eps, delta, curves[i, j], base.order)
            for i, mu in enumerate(friction) for j, eps in enumerate(noise)]
    return pd.DataFrame(rows)


def _cell(i, j, mu, eps, delta, curves, order) -> dict:
    """One table row: the seed-mean curve of a cell and its statistics."""
    mean = curves.mean(axis=0)
    stats = load_shape(mean, logits=None).as_dict()
    return {
        "row": i, "col": j, "mu_right": float(mu), "mu_left": float(mu + delta),
        "noise": float(eps), "n_seeds": len(curves), "curve": mean.tolist(),
        "curve_std": curves.std(axis=0).tolist(), **stats,
        "evenness": evenness(stats["loads"]), "order": order,
    }
