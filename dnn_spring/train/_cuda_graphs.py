"""The batched training step captured in a CUDA graph (optional, CUDA only).

A step of a batched group at a small batch is a few hundred small kernels
whose launch cost dominates on a GPU.  Its shapes are fixed (the last,
smaller batch of an epoch is its own shape, so it gets its own graph) and it
reads every changing number from device tensors (the step counters of the
random streams and of Adam, :class:`~dnn_spring.train._optim.GroupOptimizer`),
so it can be recorded once per shape with ``torch.cuda.graphs`` and replayed.

The flag: :func:`cuda_graphs_enabled`, ``cuda_graphs=True`` in
:func:`~dnn_spring.train._group.train_group`, the environment variable
``DNN_SPRING_CUDA_GRAPHS=1``, or ``--cuda-graphs`` on ``dnn-spring train``
and ``dnn-spring sweep``.  It is used only on a CUDA device; elsewhere it is
ignored.  A replay launches the kernels recorded from the eager step's
code on the same inputs; whether every kernel choice (a library's
algorithm, a buffer's alignment) is the eager one has not been checked on a
GPU, so no bit-for-bit promise is made between the two paths.  Every graph
of a group records into one shared memory pool.  The step's Adam must be
the fused kernel (it reads its step count on the device); without it the
flag is refused.

A graph belongs to the tensors it recorded: when members are retired, or a
checkpoint is loaded, the stacked tensors are new and the graphs are dropped
(:meth:`StepGraphs.clear`) and recorded again at the next step.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

__all__ = ["ENV_FLAG", "cuda_graphs_enabled", "StepGraphs"]

#: Environment variable that turns CUDA graphs on (``1``) for every group.
ENV_FLAG = "DNN_SPRING_CUDA_GRAPHS"


def cuda_graphs_enabled(flag: "bool | None", device: torch.device) -> bool:
    """Whether to capture the step: the flag (None: the environment) and a CUDA device."""
    if flag is None:
        flag = os.environ.get(ENV_FLAG, "").strip().lower() in ("1", "true", "yes", "on")
    return bool(flag) and device.type == "cuda"


def _warm_up(fn, device):
    """Run ``fn`` eagerly on a side stream, as ``torch.cuda.graphs`` asks before recording."""
    side = torch.cuda.Stream(device=device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        out = fn()
    torch.cuda.current_stream(device).wait_stream(side)
    return out


def _capture_step(fn, pool=None) -> tuple:
    """Record ``fn`` in a new CUDA graph (its kernels are not run): (graph, its output)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        out = fn()
    return graph, out


class _Captured:
    """One step of ``model`` for one batch shape, recorded in a CUDA graph."""

    def __init__(self, model, xb: Tensor, yb: Tensor, pool=None):
        self.x, self.y = xb.clone(), yb.clone()
        step = lambda: model.step(self.x, self.y)  # noqa: E731
        self.first = _warm_up(step, xb.device)  # the real step for this batch, eager
        self.graph, self.loss = _capture_step(step, pool)
        # recording ran the step's Python once and none of its kernels:
        # undo the host-side step count it advanced
        model.opt.t -= 1

    def replay(self, model, xb: Tensor, yb: Tensor) -> Tensor:
        self.x.copy_(xb)
        self.y.copy_(yb)
        self.graph.replay()
        model.opt.t += 1
        return self.loss


class StepGraphs:
    """``model.step`` through one CUDA graph per batch shape."""

    def __init__(self, model):
        if model.opt.name == "adam" and not hasattr(torch, "_fused_adam_"):
            raise ValueError("CUDA graphs need torch's fused Adam (torch._fused_adam_), which "
                             "this torch lacks; run without --cuda-graphs")
        self.model, self._graphs, self._pool = model, {}, None

    def step(self, xb: Tensor, yb: Tensor) -> Tensor:
        """One optimiser step; each member's mean loss (rows,), as ``GroupMLP.step``."""
        key = tuple(xb.shape)
        captured = self._graphs.get(key)
        if captured is None:
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            self._graphs[key] = captured = _Captured(self.model, xb, yb, self._pool)
            return captured.first
        return captured.replay(self.model, xb, yb)

    def clear(self, model=None) -> None:
        """Drop every graph (the stacked tensors changed); optionally a new model."""
        self._graphs.clear()
        if model is not None:
            self.model = model
