"""Forward hooks and the passes over the data of one load-curve measurement.

:class:`HookSet` hooks the chosen modules and hands each point's features
to a sink; :class:`Passes` runs the two streaming passes of
:func:`~dnn_spring.capture.load_curve` (class means, then within-class sums) with one
:class:`~dnn_spring.metrics._fuzziness.FuzzinessAccumulator` per point, keeping the
first pass's features while they fit the cache.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from dnn_spring.metrics._distributed import all_gather
from dnn_spring.capture._points import model_output_tensor
from dnn_spring.capture._pooling import Featurizer, check_class_budget, pick_tensor

__all__ = ["INPUT", "HookSet", "Passes", "model_device"]

#: Name of the pseudo-layer holding the model's raw input.
INPUT = "input"


class HookSet:
    """Forward hooks that hand each selected module's output to a callback.

    A module called several times in one forward gives the points ``name``,
    ``name#1``, ``name#2``...  Each output goes through ``featurize`` (the
    tensor picked, pooled or cut to next-token positions, as a float64 copy,
    so later in-place operations cannot change what the callback sees).
    """

    def __init__(self, model: nn.Module, names: Sequence[str], featurize: Featurizer):
        self.model = model
        self.names = list(names)
        self.featurize = featurize
        self.order: list = []
        self.types: dict = {}
        self.sink: Callable | None = None
        #: Points whose tensor is the model's output (found in the first forward; None before).
        self.logits_points: "set | None" = None
        self._picked: dict = {}  # the first forward's picked tensors, to compare with the output
        self._calls: dict = {}
        self._handles = []

    def __enter__(self):
        modules = dict(self.model.named_modules())
        if INPUT in self.names:
            self._handles.append(self.model.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
        for name in dict.fromkeys(self.names):
            if name != INPUT:
                self._handles.append(modules[name].register_forward_hook(self._make_hook(name)))
        self._handles.append(self.model.register_forward_hook(self._output_hook))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()

    def start_batch(self, batch):
        self._calls = {}
        self.featurize.start(batch)

    def _emit(self, name: str, module_type: str, value):
        count = self._calls.get(name, 0)
        self._calls[name] = count + 1
        point = name if count == 0 else f"{name}#{count}"
        if point not in self.types:
            self.order.append(point)
            self.types[point] = module_type
        if self.logits_points is None and name != INPUT:
            self._picked[point] = pick_tensor(value, name, self.featurize.output)
        self.sink(point, *self.featurize(point, value))

    def _output_hook(self, module, args, output):
        """After the first forward: the points whose tensor is the model's output (the logits)."""
        if self.logits_points is None:
            out = model_output_tensor(output, self.featurize.output)
            self.logits_points = {p for p, t in self._picked.items() if out is not None and t is out}
            self._picked = {}

    def _pre_hook(self, module, args, kwargs):
        self._emit(INPUT, "input", (args, kwargs))  # positional inputs first, then keywords

    def _make_hook(self, name: str):
        def hook(module, args, output):
            self._emit(name, type(module).__name__, output)
        return hook


def model_device(model: nn.Module, device):
    if device is not None:
        try:
            return torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"`device` must be a torch device such as 'cpu', 'cuda' or "
                             f"'cuda:0', got {device!r}") from None
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _model_dtype(model: nn.Module):
    """The floating dtype of the model's first floating parameter or buffer (None: none)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def _run_pass(model, recorder, batches, device, sink, after_first=None):
    """One forward pass over the data, hooks feeding ``sink(point, x, y)``.

    Floating inputs are cast to the model's dtype (float64 numpy data into a
    float32 model is the common case).  ``after_first()`` runs after the
    first batch.
    """
    recorder.sink = sink
    dtype = _model_dtype(model)
    for i, batch in enumerate(batches()):
        batch = batch.to(device, dtype)
        recorder.start_batch(batch)
        try:
            batch.call(model)
        except RuntimeError as exc:
            inputs = batch.inputs
            if dtype is None or not isinstance(inputs, torch.Tensor) or inputs.is_floating_point():
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"`data` of dtype {inputs.dtype} does not fit a {dtype} model "
                             f"({first}); pass floating-point features, e.g. x.float()") from None
        if i == 0 and after_first is not None:
            after_first()


class Passes:
    """The two passes of :func:`load_curve`: one accumulator per point, and the
    first pass's features while they fit ``cache_bytes`` (all of them with
    ``probes``), which saves the second forward pass."""

    def __init__(self, new_accumulator, cache_bytes, probes, budget=None):
        self.new_accumulator, self.cache_bytes, self.probes = new_accumulator, cache_bytes, probes
        self.budget = budget  # (next-token classes, class_bytes) or None
        self.accs, self.cache, self.stored, self.ok = {}, {}, 0, True
        self.widths = {}

    def first(self, point, feats, y):
        if point not in self.accs:
            self.accs[point] = self.new_accumulator(point)
            self.widths[point] = feats.shape[1]
        self.accs[point].update_means(feats, y)
        if self.ok or self.probes:
            self.stored += feats.numel() * feats.element_size()
            self.ok = self.ok and self.stored <= self.cache_bytes
            self.cache.setdefault(point, []).append((feats, y))
        if not self.ok and not self.probes:
            self.cache.clear()

    def second(self, point, feats, y):
        self.accs[point].update_within(feats, y)

    def check_budget(self):
        if self.budget is not None:
            check_class_budget(self.budget[0], self.widths, self.budget[1])

    def run(self, model, recorder, batches, device, distributed: bool) -> None:
        _run_pass(model, recorder, batches, device, self.first, self.check_budget)
        if distributed:
            _same_points(recorder.order)
        if not self.accs:
            raise ValueError("`data` is empty: no batch reached the model")
        for point in recorder.order:  # the same order on every rank
            self.accs[point].finish_means()
        if self.cache and self.ok or self.probes:
            for point, chunks in self.cache.items():
                for feats, y in chunks:
                    self.accs[point].update_within(feats, y)
        else:
            _run_pass(model, recorder, batches, device, self.second)


def _same_points(order) -> None:
    """Every rank measured the same points (else each rank raises the same error)."""
    orders = all_gather(list(order))
    empty = [rank for rank, points in enumerate(orders) if not points]
    if empty:
        raise ValueError(f"rank {empty[0]} had no batch: with distributed statistics every rank "
                         "needs at least one batch")
    if any(points != orders[0] for points in orders):
        raise ValueError(f"the ranks measured different points: {orders[0]} on rank 0, and "
                         f"{next(p for p in orders if p != orders[0])} elsewhere")
