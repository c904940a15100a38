"""Activation capture for any ``nn.Module`` and the load curve (SPEC §2–§3).

Two public functions, a discover/measure pair: :func:`list_layers` names the
modules that can be measured, :func:`load_curve` measures them.  Features are
never held for the whole data set unless they fit ``cache_bytes``: each
forward hook feeds a streaming :class:`~dnn_spring.metrics.FuzzinessAccumulator`.
"""

from __future__ import annotations

import difflib
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from dnn_spring.checks import range_problem, require
from dnn_spring.conditioning import warn_near_singular
from dnn_spring.features import feature_label_pairs
from dnn_spring.metrics import (
    DEFAULT_MAX_INVERSE_WIDTH,
    DEFAULT_RTOL,
    FuzzinessAccumulator,
    probe_stats,
)

__all__ = ["list_layers", "load_curve", "INPUT"]

#: Name of the pseudo-layer holding the model's raw input.
INPUT = "input"


def list_layers(model: nn.Module, *, types=None, leaves_only: bool = False) -> list:
    """Names of the modules of ``model`` that :func:`load_curve` can measure.

    Parameters
    ----------
    model : nn.Module
    types : type or tuple of types, optional
        Keep only modules of these types (for example ``nn.LeakyReLU``).
    leaves_only : bool, default=False
        Keep only modules without children.

    Returns
    -------
    list of str
        Module names in registration order (nested names use dots).
    """
    out = []
    for name, module in model.named_modules():
        if not name:
            continue
        if types is not None and not isinstance(module, types):
            continue
        if leaves_only and next(module.children(), None) is not None:
            continue
        out.append(name)
    return out


def _default_layers(model: nn.Module) -> list:
    if hasattr(model, "load_curve_layers"):
        return list(model.load_curve_layers())
    return [name for name, _ in model.named_children()]


def _resolve_layers(model: nn.Module, layers) -> list:
    """Turn a names / type / callable selection into a list of module names."""
    modules = dict(model.named_modules())
    if layers is None:
        names = _default_layers(model)
    elif isinstance(layers, str):
        names = [layers]
    elif isinstance(layers, type) or (
        isinstance(layers, tuple) and layers and all(isinstance(t, type) for t in layers)
    ):
        names = list_layers(model, types=layers)
    elif callable(layers):
        names = [n for n, m in modules.items() if n and layers(n, m)]
    else:
        names = list(layers)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"`layers` must hold module names (str), got {type(name).__name__}")
        if name != INPUT and name not in modules:
            close = difflib.get_close_matches(name, [n for n in modules if n], n=5)
            hint = f"; close matches: {close}" if close else ""
            raise ValueError(f"layer {name!r} not found in {type(model).__name__}{hint}; "
                             "list the valid names with dnn_spring.list_layers(model)")
    if not names:
        raise ValueError(f"no layer of {type(model).__name__} matches `layers`={layers!r}; "
                         "list the valid names with dnn_spring.list_layers(model)")
    return names


def _iter_data(data, labels, batch_size: int) -> Callable[[], Iterable]:
    """Return a callable yielding fresh (inputs, labels) batches."""
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, torch.Tensor):
        if labels is None:
            raise ValueError("data with no labels: pass labels= with a tensor, "
                             "or a DataLoader that yields (inputs, labels)")
        labels = torch.as_tensor(labels)
        if labels.shape[0] != data.shape[0]:
            raise ValueError(f"`data` and `labels` must have the same length, "
                             f"got {data.shape[0]} and {labels.shape[0]}")
        return lambda: ((data[i:i + batch_size], labels[i:i + batch_size])
                        for i in range(0, data.shape[0], batch_size))
    if labels is not None:
        raise ValueError("`labels` must be None when `data` yields (inputs, labels) batches")
    if iter(data) is data:
        raise TypeError("`data` is read twice: pass a tensor, a DataLoader or a list of batches, "
                        "not a one-shot iterator")
    return lambda: feature_label_pairs(data)


def _output_tensor(output, name: str) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"layer {name!r} returned {type(output).__name__}, not a tensor")


class _Recorder:
    """Forward hooks that hand each selected module's output to a callback.

    A module called several times in one forward gives the points ``name``,
    ``name#1``, ``name#2``...  Outputs are detached; the callback receives a
    float64 copy, so later in-place operations cannot change what it sees.
    """

    def __init__(self, model: nn.Module, names: Sequence[str]):
        self.model = model
        self.names = list(names)
        self.order: list = []
        self.types: dict = {}
        self.sink: Callable | None = None
        self._calls: dict = {}
        self._handles = []

    def __enter__(self):
        modules = dict(self.model.named_modules())
        if INPUT in self.names:
            self._handles.append(self.model.register_forward_pre_hook(self._pre_hook))
        for name in dict.fromkeys(self.names):
            if name != INPUT:
                self._handles.append(modules[name].register_forward_hook(self._make_hook(name)))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()

    def start_batch(self):
        self._calls = {}

    def _emit(self, name: str, module_type: str, tensor: torch.Tensor):
        count = self._calls.get(name, 0)
        self._calls[name] = count + 1
        point = name if count == 0 else f"{name}#{count}"
        if point not in self.types:
            self.order.append(point)
            self.types[point] = module_type
        feats = tensor.detach().flatten(1)
        self.sink(point, feats.clone() if feats.dtype == torch.float64 else feats.to(torch.float64))

    def _pre_hook(self, module, args):
        self._emit(INPUT, "input", _output_tensor(args, INPUT))

    def _make_hook(self, name: str):
        def hook(module, args, output):
            self._emit(name, type(module).__name__, _output_tensor(output, name))
        return hook


def _model_device(model: nn.Module, device):
    if device is not None:
        return torch.device(device)
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _model_dtype(model: nn.Module):
    """The floating dtype of the model's first floating parameter or buffer (None: none)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def _run_pass(model, recorder, batches, device, sink):
    """One forward pass over the data, hooks feeding ``sink(point, x, y)``.

    Floating inputs are cast to the model's dtype (float64 numpy data into a
    float32 model is the common case).
    """
    current = {}
    recorder.sink = lambda point, feats: sink(point, feats, current["y"])
    dtype = _model_dtype(model)
    for x, y in batches():
        x = torch.as_tensor(x)
        if dtype is not None and x.is_floating_point() and x.dtype != dtype:
            x = x.to(dtype)
        current["y"] = torch.as_tensor(y).to(device)
        recorder.start_batch()
        model(x.to(device))


def load_curve(model: nn.Module, data, labels=None, layers=None, *, batch_size: int = 1024,
               device=None, probes: bool = False, inverse: bool = True, n_classes=None,
               rtol: float = DEFAULT_RTOL, cache_bytes: int = 512 * 2**20,
               max_inverse_width: int = DEFAULT_MAX_INVERSE_WIDTH, method: str = "lowrank",
               warn: bool = True) -> pd.DataFrame:
    """Measure the separation of classes at each chosen layer of ``model``.

    The model is put in eval mode and run under ``no_grad``; every module's
    own training flag is restored afterwards.  Each layer's output is
    flattened per sample and its fuzziness computed in float64 (SPEC §2).

    Parameters
    ----------
    model : nn.Module
    data : tensor of shape (n_samples, ...) or iterable of (inputs, labels)
        The inputs, or a DataLoader / list of ``(inputs, labels)`` batches.
        Floating inputs are cast to the model's dtype (float64 numpy arrays
        into a float32 model).
        It is read twice unless all features fit ``cache_bytes``, so a
        DataLoader must give the same samples each time (no augmentation).
    labels : tensor of shape (n_samples,), optional
        Integer class labels; required when ``data`` is a tensor.
    layers : None, str, sequence of str, type, tuple of types or callable
        Module names (``"input"`` is the raw input), every module of a type,
        or ``callable(name, module) -> bool``.  By default the model's
        ``load_curve_layers()`` if it has one, else its top-level children.
    batch_size : int, default=1024
        Chunk size for tensor ``data``.
    device : str or torch.device, optional
        Where to run; default the model's device.
    probes : bool, default=False
        Add the ``lin_residual`` and ``logistic_loss`` probe columns (slower;
        holds each layer's features in memory).
    inverse : bool, default=True
        Compute ``log_inv_d`` (needs a p×p matrix; NaN above ``max_inverse_width``).
    n_classes : int, optional
        Require exactly these classes.
    rtol : float, default=1e-6
        Rank cut-off, see :class:`~dnn_spring.metrics.FuzzinessAccumulator`.
    cache_bytes : int, default=512 MiB
        Keep features up to this size from the first pass to avoid a second
        forward pass.
    method : {"lowrank", "pinv32"}, default="lowrank"
        How SS_B is inverted for ``log_d``; ``"pinv32"`` reproduces the
        original code's float32 pinv (see :mod:`dnn_spring.conditioning`).
    warn : bool, default=True
        One ``RuntimeWarning`` naming the points where SS_B is near singular.

    Returns
    -------
    pandas.DataFrame
        One row per point in forward order with columns ``layer``, ``point``
        (0, 1, ...), ``module``, ``width``, ``n_samples``, ``log_d``,
        ``log_inv_d``, ``log_trace_ratio``, ``log_d_pinv32`` (NaN where SS_W
        is not formed: ``inverse=False`` or wider than ``max_inverse_width``),
        ``rank_b``, ``max_rank_b``, ``cond_b``, ``near_singular`` (see
        :func:`~dnn_spring.metrics.separation_stats`),
        ``load`` (drop in log D from the previous point, NaN for the first)
        and ``is_logits`` (the model's ``logits_layer``), plus the probe
        columns when asked.
    """
    require(range_problem("batch_size", batch_size, 1))
    names = _resolve_layers(model, layers)
    device = _model_device(model, device)
    batches = _iter_data(data, labels, batch_size)
    flags = {m: m.training for m in model.modules()}
    accs, cache, stored = {}, {}, {"bytes": 0, "ok": True}

    def first_pass(point, feats, y):
        if point not in accs:
            accs[point] = FuzzinessAccumulator(n_classes=n_classes, rtol=rtol, inverse=inverse,
                                               max_inverse_width=max_inverse_width, name=point,
                                               method=method)
        accs[point].update_means(feats, y)
        if stored["ok"] or probes:
            stored["bytes"] += feats.numel() * feats.element_size()
            stored["ok"] = stored["ok"] and stored["bytes"] <= cache_bytes
            cache.setdefault(point, []).append((feats, y))
        if not stored["ok"] and not probes:
            cache.clear()

    try:
        model.eval()
        with torch.no_grad(), _Recorder(model, names) as recorder:
            _run_pass(model, recorder, batches, device, first_pass)
            if not accs:
                raise ValueError("`data` is empty: no batch reached the model")
            for acc in accs.values():
                acc.finish_means()
            if cache and stored["ok"] or probes:
                for point, chunks in cache.items():
                    for feats, y in chunks:
                        accs[point].update_within(feats, y)
            else:
                _run_pass(model, recorder, batches, device,
                          lambda point, feats, y: accs[point].update_within(feats, y))
            order, types = recorder.order, recorder.types
    finally:
        for module, flag in flags.items():
            module.training = flag
    results = {point: accs[point].result() for point in order}
    if warn:
        warn_near_singular(list(results.items()))
    frame = pd.DataFrame([_row(i, point, types[point], results[point], model)
                          for i, point in enumerate(order)])
    if probes:
        for i, point in enumerate(order):
            feats = torch.cat([f for f, _ in cache[point]])
            ys = torch.cat([y for _, y in cache[point]])
            for key, value in probe_stats(feats, ys).items():
                frame.loc[i, key] = value
    frame.insert(frame.columns.get_loc("is_logits"), "load", -frame["log_d"].diff())
    return frame


def _row(index: int, point: str, module_type: str, stats: dict, model) -> dict:
    logits = getattr(model, "logits_layer", None)
    return {
        "layer": point,
        "point": index,
        "module": module_type,
        "width": stats["width"],
        "n_samples": stats["n_samples"],
        "log_d": stats["log_d"],
        "log_inv_d": stats["log_inv_d"],
        "log_trace_ratio": stats["log_trace_ratio"],
        "log_d_pinv32": stats["log_d_pinv32"],
        "rank_b": stats["rank_b"],
        "max_rank_b": stats["max_rank_b"],
        "cond_b": stats["cond_b"],
        "near_singular": stats["near_singular"],
        "is_logits": logits is not None and point == logits,
    }
