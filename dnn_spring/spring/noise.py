"""Seeded Gaussian increments: the noise, kept apart from the problem and solver.

Like a Brownian object of torchsde, :class:`GaussianIncrements` carries its own
seeds and hands out one array of increments per step.  With the numpy backend
every chain of a batch owns a :class:`numpy.random.Generator` and draws its
increments in the same order as ``generator.normal(0, scale, (n_steps, width))``
would: chain ``b`` of a batch seeded with ``seeds=[s]`` sees exactly the
increments that ``sdeint.itoEuler(..., generator=numpy.random.default_rng(s))``
draws for the same problem.  The torch backend draws the whole batch from one
:class:`torch.Generator` on the chosen device.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from dnn_spring._checks import check_range

__all__ = ["GaussianIncrements", "resolve_generators", "torch_seed"]

_CHUNK = 2048  # steps drawn at once: bounded memory, few generator calls


def resolve_generators(seed, n: int) -> tuple[list, list]:
    """Turn ``seed`` into ``n`` independent numpy generators and their seeds.

    Parameters
    ----------
    seed : None, int, numpy.random.Generator, or sequence of int of length n
        ``int`` with ``n == 1``: ``default_rng(seed)`` (the generator sdeint
        would use).  ``int`` with ``n > 1``: the children of
        ``SeedSequence(seed).spawn(n)``.  A sequence: one ``default_rng`` per
        entry.  A Generator: itself when ``n == 1``, else ``spawn(n)``.
        ``None``: fresh entropy, recorded so the run can be repeated.
    n : int
        Number of chains.

    Returns
    -------
    generators : list of numpy.random.Generator, length n
    seeds : list
        What each chain's stream was made from (int, SeedSequence state, or
        None when a Generator was passed in).
    """
    if seed is None:
        seed = int(np.random.SeedSequence().entropy)
    if isinstance(seed, np.random.Generator):
        gens = [seed] if n == 1 else list(seed.spawn(n))
        return gens, [None] * n
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        seed = int(seed)
        check_range("seed", seed, 0)
        if n == 1:
            return [np.random.default_rng(seed)], [seed]
        children = np.random.SeedSequence(seed).spawn(n)
        return [np.random.default_rng(c) for c in children], [
            f"{seed}/{i}" for i in range(n)
        ]
    if isinstance(seed, Sequence) and not isinstance(seed, str):
        seeds = [int(s) for s in seed]
        if len(seeds) != n:
            raise ValueError(f"`seed` must list one seed per chain ({n}), got {len(seeds)}")
        return [np.random.default_rng(s) for s in seeds], seeds
    raise TypeError(
        f"`seed` must be None, an int, a sequence of ints or a numpy Generator, "
        f"got {type(seed).__name__}"
    )


def torch_seed(seed) -> int:
    """A 63-bit torch seed derived from ``seed`` (int, None or Generator)."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63 - 1))
    if isinstance(seed, Sequence) and not isinstance(seed, str):
        seed = [int(s) for s in seed]
    if seed is None:
        seed = int(np.random.SeedSequence().entropy)
    state = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


class GaussianIncrements:
    """Independent ``N(0, scale²)`` increments for a batch of chains.

    Parameters
    ----------
    generators : list of numpy.random.Generator, or torch.Generator
        One numpy generator per chain (numpy backend), or one torch generator
        for the whole batch (torch backend).
    width : int
        Increments per chain and step (1 for shared noise, L per block).
    scale : float
        Standard deviation of each increment (``sqrt(dt)`` for a Wiener
        process, 1 for the first-order chain's ξ).
    n_chains : int, optional
        Batch size; needed for the torch backend.
    device, dtype : torch device and dtype, optional
        Where the torch backend puts its increments (default float64).

    Iterating yields arrays of shape ``(n_chains, width)``, one per step.
    """

    def __init__(self, generators, width: int, scale: float, *, n_chains=None,
                 device=None, dtype=None):
        self.width = int(width)
        self.scale = float(scale)
        self._numpy = isinstance(generators, (list, tuple))
        self.generators = generators
        self.n_chains = len(generators) if self._numpy else int(n_chains)
        self.device = device
        self.dtype = dtype

    def _chunk(self, size: int):
        if self._numpy:
            draws = [g.normal(0.0, self.scale, (size, self.width)) for g in self.generators]
            return np.stack(draws, axis=1)
        import torch

        shape = (size, self.n_chains, self.width)
        z = torch.randn(shape, generator=self.generators, device=self.device,
                        dtype=self.dtype or torch.float64)
        return z * self.scale

    def chunks(self, n_steps: int) -> Iterator:
        """Yield ``(first_step, block)`` with blocks of shape (size, n_chains, width)."""
        done = 0
        while done < n_steps:
            size = min(_CHUNK, n_steps - done)
            yield done, self._chunk(size)
            done += size

    def steps(self, n_steps: int) -> Iterator:
        """Yield the increments of ``n_steps`` steps, each ``(n_chains, width)``."""
        for _, block in self.chunks(n_steps):
            yield from block
