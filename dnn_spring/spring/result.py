"""Tidy results of spring–block simulations and the chain's load curve.

The chain's load curve is the distance still to go, ``y − x_ℓ``, at the wall
and at every block, ``ℓ = 0..L`` (``x_0 = 0``): ``L + 1`` points, the analogue
of ``log D_0 .. log D_{L−1}`` of a depth-``L+1`` network with its logits point
dropped.  Its loads are the extensions ``x_ℓ − x_{ℓ−1}``, ``ℓ = 1..L``.  The
last spring, from block L to the pulled end ``x_{L+1} = y``, plays the logits
layer and is **not** part of the curve or its loads (it is kept in
``extensions``).  Shape statistics come from :func:`dnn_spring.metrics.load_shape`
with ``logits=None``, exactly as for a network's curve without its logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dnn_spring.metrics._shape import LoadShape, load_shape

__all__ = ["ChainResult", "ChainBatchResult", "chain_curve", "evenness"]


def chain_curve(positions, y) -> np.ndarray:
    """Load curve ``y − x_ℓ`` for ``ℓ = 0..L`` (the wall first).

    Parameters
    ----------
    positions : array-like of shape (..., L)
        Block positions.
    y : float or array-like broadcastable to (...,)
        Position of the pulled end.

    Returns
    -------
    numpy.ndarray of shape (..., L + 1)
    """
    x = np.asarray(positions, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)[..., None]
    wall = np.zeros(x.shape[:-1] + (1,))
    return y - np.concatenate([wall, x], axis=-1)


def evenness(loads) -> float:
    """Evenness of the loads, ``1 − CV / sqrt(n − 1)`` clipped to [0, 1].

    ``CV = std(load) / mean(load)`` is the coefficient of variation of the
    ``n`` loads.  For non-negative loads ``CV ≤ sqrt(n − 1)`` (all the load on
    one spring), so evenness is 1 for equal loads and 0 when one spring
    carries everything.  It is the spring–block stand-in for test accuracy:
    the DNN's best generalisation sits where layers share the load equally.

    Parameters
    ----------
    loads : array-like of shape (n,)

    Returns
    -------
    float
    """
    loads = np.asarray(loads, dtype=np.float64)
    mean = loads.mean()
    if loads.size < 2 or mean <= 0:
        return 0.0
    cv = loads.std() / mean
    return float(np.clip(1.0 - cv / np.sqrt(loads.size - 1), 0.0, 1.0))


@dataclass(frozen=True)
class ChainResult:
    """One simulated chain.

    Attributes
    ----------
    config : FirstOrderConfig or LangevinConfig
        The full configuration.
    seed : int, str or None
        What the noise stream was made from (None: a Generator passed in).
    backend : str
        ``"numpy"``, ``"torch"``, ``"sdeint"`` or ``"loop"``.
    times : numpy.ndarray of shape (n_records,)
        Times of the recorded positions (``step · dt`` or ``step · eta``).
    trajectory : numpy.ndarray of shape (n_records, L)
        Block positions over time, every ``record_every`` steps and the end.
    final : numpy.ndarray of shape (L,)
        Final positions.
    velocity : numpy.ndarray of shape (L,) or None
        Final velocities (second-order chain only).
    curve : numpy.ndarray of shape (L + 1,)
        The load curve ``y − x_ℓ``, ``ℓ = 0..L``.
    loads : numpy.ndarray of shape (L,)
        Extensions ``x_ℓ − x_{ℓ−1}``, ``ℓ = 1..L``.
    extensions : numpy.ndarray of shape (L + 1,)
        All spring extensions, the last spring (to ``y``) included.
    stats : LoadShape
        ``load_shape(curve, logits=None)``.
    evenness : float
        See :func:`evenness`.
    """

    config: Any
    seed: Any
    backend: str
    times: np.ndarray
    trajectory: np.ndarray
    final: np.ndarray
    velocity: "np.ndarray | None"
    curve: np.ndarray
    loads: np.ndarray
    extensions: np.ndarray
    stats: LoadShape
    evenness: float

    @classmethod
    def build(cls, config, *, seed, backend, times, trajectory, velocity=None):
        """Assemble a result from the recorded positions of one chain."""
        trajectory = np.asarray(trajectory, dtype=np.float64)
        final = trajectory[-1].copy()
        curve = chain_curve(final, config.y)
        padded = np.concatenate([[0.0], final, [config.y]])
        extensions = np.diff(padded)
        loads = extensions[:-1]
        return cls(
            config=config,
            seed=seed,
            backend=backend,
            times=np.asarray(times, dtype=np.float64),
            trajectory=trajectory,
            final=final,
            velocity=None if velocity is None else np.asarray(velocity, dtype=np.float64),
            curve=curve,
            loads=loads,
            extensions=extensions,
            stats=load_shape(curve, logits=None),
            evenness=evenness(loads),
        )

    def as_dict(self) -> dict:
        """A flat JSON-serialisable record (config fields, seed, curve, stats)."""
        record = {"order": self.config.order, **self.config.as_dict()}
        record.update(seed=self.seed, backend=self.backend)
        record.update(final=self.final.tolist(), curve=self.curve.tolist())
        record.update(extensions=self.extensions.tolist(), evenness=self.evenness)
        record.update(self.stats.as_dict())
        return record


@dataclass(frozen=True)
class ChainBatchResult:
    """A batch of chains simulated together (parameter grid × seeds).

    Attributes
    ----------
    configs : tuple of configs, length B
    seeds : tuple, length B
    backend : str
    times : numpy.ndarray of shape (n_records,)
    trajectory : numpy.ndarray of shape (B, n_records, L)
    final : numpy.ndarray of shape (B, L)
    velocity : numpy.ndarray of shape (B, L) or None
    """

    configs: tuple
    seeds: tuple
    backend: str
    times: np.ndarray
    trajectory: np.ndarray
    final: np.ndarray
    velocity: "np.ndarray | None"

    def __len__(self) -> int:
        return len(self.configs)

    def __getitem__(self, i: int) -> ChainResult:
        """The ``i``-th chain as a :class:`ChainResult`."""
        return ChainResult.build(
            self.configs[i],
            seed=self.seeds[i],
            backend=self.backend,
            times=self.times,
            trajectory=self.trajectory[i],
            velocity=None if self.velocity is None else self.velocity[i],
        )

    @property
    def curves(self) -> np.ndarray:
        """Load curves ``y − x_ℓ``, shape (B, L + 1)."""
        return chain_curve(self.final, [c.y for c in self.configs])

    def to_frame(self):
        """One row per chain: config fields, seed, final positions and stats."""
        import pandas as pd

        return pd.DataFrame([self[i].as_dict() for i in range(len(self))])
