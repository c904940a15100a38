"""The first-order (overdamped) spring–block iteration with static friction.

Problem, noise and solver are separate: :func:`first_order_step` is the whole
update of docs/science.md#chains, :class:`~dnn_spring.spring.noise.GaussianIncrements` the
seeded noise ξ, and :func:`simulate_first_order_batch` the loop that records.
The batch is vectorised in numpy over chains ``(B, L)``; every chain keeps its
own random stream, so a chain's path does not depend on the batch it is in.
"""

from __future__ import annotations

import numpy as np

from dnn_spring.spring._common import check_batch, check_memory, column, record_steps, stretch
from dnn_spring.spring.config import FirstOrderConfig
from dnn_spring.spring.noise import GaussianIncrements, resolve_generators
from dnn_spring.spring.result import ChainBatchResult, ChainResult

__all__ = ["first_order_step", "simulate_first_order", "simulate_first_order_batch"]


def first_order_step(x, xi, *, k, y, eta, noise, mu_right, mu_left):
    """One synchronous update of every block (docs/science.md#chains).

    ::

        G = k Δ + noise · ξ
        x ← x + eta · sign(G) · max(|G| − μ, 0),   μ = mu_left if G < 0 else mu_right

    Parameters
    ----------
    x : numpy.ndarray of shape (B, L)
        Positions; not modified.
    xi : numpy.ndarray of shape (B, L) or (B, 1)
        Standard normal draws (one column is shared by every block).
    k, y, eta, noise, mu_right, mu_left : float or array of shape (B, 1)

    Returns
    -------
    numpy.ndarray of shape (B, L)
    """
    g = k * stretch(x, y) + noise * xi
    mu = np.where(g < 0, mu_left, mu_right)
    return x + eta * np.sign(g) * np.maximum(np.abs(g) - mu, 0.0)


def simulate_first_order_batch(configs, *, seed=None, record_every=None) -> ChainBatchResult:
    """Iterate a batch of first-order chains at once.

    Parameters
    ----------
    configs : FirstOrderConfig or sequence of FirstOrderConfig, length B
        They must agree on ``n_blocks``, ``n_steps`` and ``noise_mode``; every
        other field may differ per chain (a parameter grid × seeds).
    seed : None, int, sequence of B ints or numpy.random.Generator
        See ``resolve_generators`` in :mod:`dnn_spring.spring.noise`.  A single
        chain with ``seed=s`` draws ``default_rng(s).normal(0, 1, L)`` (or one
        number for shared noise) at every step.
    record_every : int, optional
        Record positions every this many steps (and at the end); default
        ``max(1, n_steps // 1000)``.

    Returns
    -------
    ChainBatchResult
        ``trajectory`` has shape (B, n_records, L); times are ``step · eta``.
    """
    configs = check_batch(configs, FirstOrderConfig, ("n_blocks", "n_steps", "noise_mode"))
    first = configs[0]
    n, n_blocks, n_steps = len(configs), first.n_blocks, first.n_steps
    check_memory(n, n_blocks, n_steps, record_every, steps_fix="a smaller `n_steps`")
    gens, seeds = resolve_generators(seed, n)
    width = n_blocks if first.noise_mode == "per_block" else 1
    noise = GaussianIncrements(gens, width, 1.0)
    params = {name: column(configs, name)
              for name in ("k", "y", "eta", "noise", "mu_right", "mu_left")}
    steps = record_steps(n_steps, record_every)
    traj = np.empty((n, steps.size, n_blocks))
    x = np.zeros((n, n_blocks))
    traj[:, 0] = x
    slot = 1
    for step, xi in enumerate(noise.steps(n_steps), start=1):
        x = first_order_step(x, xi, **params)
        if slot < steps.size and step == steps[slot]:
            traj[:, slot] = x
            slot += 1
    eta = np.array([c.eta for c in configs])
    times = steps * eta[0] if np.all(eta == eta[0]) else steps.astype(np.float64)
    return ChainBatchResult(configs=configs, seeds=tuple(seeds), backend="numpy",
                            times=times, trajectory=traj, final=x.copy(), velocity=None)


def simulate_first_order(config: FirstOrderConfig = None, *, seed=None,
                         record_every=None) -> ChainResult:
    """Iterate one first-order chain (docs/science.md#chains, reference defaults).

    Parameters
    ----------
    config : FirstOrderConfig, optional
        Defaults to ``FirstOrderConfig()`` (L=7, k=1, η=0.01, ε̄=0.1,
        μ→=μ←=0.1, 10⁴ steps).
    seed : None, int or numpy.random.Generator
        The noise stream; ``None`` draws fresh entropy (recorded in the result).
    record_every : int, optional
        Record positions every this many steps; default ``n_steps // 1000``.

    Returns
    -------
    ChainResult
    """
    config = FirstOrderConfig() if config is None else config
    batch = simulate_first_order_batch([config], seed=seed, record_every=record_every)
    return batch[0]
