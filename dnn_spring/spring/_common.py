"""Helpers shared by the two chains: parameter stacking, recording, spring force."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dnn_spring._checks import check_items

__all__ = []

_DEFAULT_RECORDS = 1000  # recorded time points when record_every is not given
#: Most memory (bytes) the arrays of one simulation call may take; more is refused up front.
MAX_BYTES = 4 * 2**30


def check_batch(configs, kind, same: Sequence[str]) -> tuple:
    """Validate a batch: configs of type ``kind`` agreeing on the ``same`` fields."""
    if isinstance(configs, kind):
        configs = [configs]
    configs = tuple(check_items("configs", configs, kind, "configuration"))
    for name in same:
        values = {getattr(c, name) for c in configs}
        if len(values) > 1:
            raise ValueError(
                f"`{name}` must be the same for every chain of a batch, got {sorted(values)}"
            )
    return configs


def column(configs, name: str, xp=np, **kw):
    """Field ``name`` of every config as a (B, 1) column (numpy or torch)."""
    values = np.array([[float(getattr(c, name))] for c in configs])
    return values if xp is np else xp.as_tensor(values, **kw)


def _every(n_steps: int, record_every) -> int:
    if record_every is None:
        record_every = max(1, n_steps // _DEFAULT_RECORDS)
    if isinstance(record_every, bool) or not isinstance(record_every, (int, np.integer)) \
            or record_every < 1:
        raise ValueError(f"`record_every` must be an integer >= 1, got {record_every!r}")
    return int(record_every)


def check_memory(n_chains: int, n_blocks: int, n_steps: int, record_every, *,
                 per_step: int = 0, steps_fix: str) -> None:
    """Refuse, before allocating anything, a simulation whose arrays exceed :data:`MAX_BYTES`.

    Counted: the recorded trajectory (n_chains × n_records × n_blocks), the
    recorded step indices, and ``per_step`` float64 numbers held for every
    step (the time grid, an sdeint path).  ``steps_fix`` says how to take
    fewer steps, e.g. "a larger `dt` or a smaller `t_max`".
    """
    every = _every(n_steps, record_every)
    n_records = n_steps // every + 2
    trajectory = 8 * n_records * (1 + n_chains * n_blocks)
    whole_path = 8 * per_step * (n_steps + 1)
    total = trajectory + whole_path
    if total <= MAX_BYTES:
        return
    fix = (f"record fewer points (a larger `record_every` than {every})" if trajectory > whole_path
           else f"take fewer steps ({steps_fix})")
    raise ValueError(f"the simulation would need {total / 2**30:.1f} GiB of memory for "
                     f"{n_steps:,} steps of {n_chains} chain{'s' * (n_chains > 1)} "
                     f"(limit {MAX_BYTES / 2**30:g} GiB); {fix}")


def record_steps(n_steps: int, record_every) -> np.ndarray:
    """Step indices to record: 0, r, 2r, ... and always the last step."""
    record_every = _every(n_steps, record_every)
    steps = np.arange(0, n_steps + 1, int(record_every))
    if steps[-1] != n_steps:
        steps = np.append(steps, n_steps)
    return steps


def stretch(x, y):
    """Stretch difference ``Δ_ℓ = (x_{ℓ+1} − x_ℓ) − (x_ℓ − x_{ℓ−1})``, x_0 = 0, x_{L+1} = y.

    Computed as the difference of neighbouring extensions, in exactly this
    order of operations (tests compare with a loop transcription of docs/science.md#chains).

    Parameters
    ----------
    x : array of shape (B, L) (numpy or torch)
    y : array of shape (B, 1)

    Returns
    -------
    array of shape (B, L)
    """
    if isinstance(x, np.ndarray):
        y = np.broadcast_to(np.asarray(y, dtype=x.dtype), (x.shape[0], 1))
        padded = np.concatenate([np.zeros_like(y), x, y], axis=1)
    else:  # torch
        import torch

        y = torch.as_tensor(y, dtype=x.dtype, device=x.device).expand(x.shape[0], 1)
        padded = torch.cat([torch.zeros_like(y), x, y], dim=1)
    ext = padded[:, 1:] - padded[:, :-1]
    return ext[:, 1:] - ext[:, :-1]
