"""Statistics summed across processes when ``torch.distributed`` is initialised.

Under ``DistributedDataParallel`` each rank sees its shard of the data.  The
separation statistics are sums (class counts and sums in the first pass,
within-class sums in the second), so adding them up across ranks gives every
rank the statistics of the whole data: a few small all-reduces per layer.
Classes are matched by label, since a shard need not hold every class.

Every rank must take part in the same collective calls in the same order:
call the measuring function on every rank, or pass ``distributed=False`` to
measure one rank's data alone.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["use_distributed", "all_gather", "sum_across", "sum_floats", "merge_class_rows"]


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


def use_distributed(distributed) -> bool:
    """Resolve ``distributed``: None means "when a process group is initialised".

    Parameters
    ----------
    distributed : bool or None
        True requires an initialised process group, False never sums.
    """
    if distributed is None:
        return _initialised()
    if not isinstance(distributed, bool):
        raise TypeError(f"`distributed` must be None, True or False, got {distributed!r}")
    if distributed and not _initialised():
        raise ValueError("`distributed=True` needs an initialised process group: call "
                         "torch.distributed.init_process_group first, or pass distributed=None")
    return distributed


def _device() -> torch.device:
    """Where a collective's own tensors live: the current GPU for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather(obj) -> list:
    """Every rank's ``obj`` (a small picklable value), in rank order."""
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def sum_across(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place; returns it."""
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def sum_floats(*values: float) -> list:
    """Each float summed over the ranks (one all-reduce in float64)."""
    return sum_across(torch.tensor(values, dtype=torch.float64, device=_device())).tolist()


def merge_class_rows(labels, rows):
    """Sum per-class rows over the ranks, matching the rows by class label.

    Parameters
    ----------
    labels : int tensor of shape (C_r,), or None
        This rank's class labels, sorted; None when it has no rows.
    rows : float64 tensor of shape (C_r, k), or None
        One row per label (row ``i`` belongs to ``labels[i]``); None when
        this rank saw no sample at all.

    Returns
    -------
    labels : int64 tensor of shape (C,)
        The sorted union of every rank's labels.
    rows : float64 tensor of shape (C, k), or None
        The rows summed over the ranks; None when no rank had any.
    """
    mine = [] if labels is None else labels.tolist()
    width = None if rows is None else rows.shape[1]
    seen = all_gather((mine, width))
    widths = {w for _, w in seen if w is not None}
    if not widths:
        return torch.zeros(0, dtype=torch.int64), None
    if len(widths) > 1:
        raise ValueError(f"the ranks' features have different widths: {sorted(widths)}")
    union = torch.tensor(sorted(set().union(*(set(s) for s, _ in seen))), dtype=torch.int64)
    device = rows.device if rows is not None else _device()
    table = torch.zeros((union.numel(), widths.pop()), dtype=torch.float64, device=device)
    if rows is not None and len(mine):
        table[torch.searchsorted(union, torch.tensor(mine, dtype=torch.int64)).to(device)] = rows
    return union, sum_across(table)
