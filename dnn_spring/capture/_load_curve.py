"""Activation capture for any ``nn.Module`` and the load curve (docs/science.md#separation-fuzziness, #load-curve-and-shape).

Two public functions, a discover/measure pair: :func:`list_layers` names the
modules that can be measured, :func:`load_curve` measures them.  Features are
never held for the whole data set unless they fit ``cache_bytes``: each
forward hook feeds a streaming :class:`~dnn_spring.metrics._fuzziness.FuzzinessAccumulator`.
"""

from __future__ import annotations

import difflib
import warnings

import pandas as pd
import torch
from torch import nn

from dnn_spring.capture._inputs import batch_stream
from dnn_spring._checks import range_problem, require
from dnn_spring.metrics._conditioning import warn_near_singular
from dnn_spring.metrics._distributed import use_distributed
from dnn_spring.metrics._fuzziness import (
    DEFAULT_MAX_INVERSE_WIDTH,
    DEFAULT_RTOL,
    FuzzinessAccumulator,
    probe_stats,
)
from dnn_spring.capture._hooks import INPUT, Passes, HookSet, model_device
from dnn_spring.capture._points import default_points
from dnn_spring.capture._pooling import (NEXT_TOKEN_BYTES, Featurizer, check_pooling, count_next_tokens,
                                kept_tokens, warn_wide)

__all__ = ["list_layers", "load_curve", "resolve_layers", "logits_rows", "INPUT",
           "UNDER_SAMPLED_HELP"]

#: What to do about an under-sampled point (in the warning).
UNDER_SAMPLED_HELP = ("more samples, `pool=` for sequence outputs, measuring fewer or narrower "
                      "points (`layers=`), or `project=k`, a seeded random projection to k columns")


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


def resolve_layers(model: nn.Module, layers, data=None, target: str = "label") -> list:
    """Turn a names / type / callable selection (None: :func:`default_points`) into names."""
    modules = dict(model.named_modules())
    if layers is None:
        names = default_points(model, data, target=target)
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


def load_curve(model: nn.Module, data, labels=None, layers=None, *, pool="flatten",
               target: str = "label", output=None, max_classes=None,
               class_bytes: int = NEXT_TOKEN_BYTES, distributed=None, batch_size: int = 1024,
               device=None, probes: bool = False, inverse: bool = False, n_classes=None,
               rtol: float = DEFAULT_RTOL, cache_bytes: int = 512 * 2**20,
               max_inverse_width: int = DEFAULT_MAX_INVERSE_WIDTH, method: str = "lowrank",
               warn: bool = True, logits="auto", project: "int | None" = None,
               seed: int = 0) -> pd.DataFrame:
    """Measure the separation of classes at each chosen layer of ``model``.

    The model is put in eval mode and run under ``no_grad``; every module's
    own training flag is restored afterwards.  Each layer's output becomes
    one row of features per sample (flattened, or pooled over tokens) and its
    fuzziness is computed in float64 (docs/science.md#separation-fuzziness).

    Parameters
    ----------
    model : nn.Module
    data : tensor of shape (n_samples, ...), or re-iterable of batches
        The inputs, or a DataLoader / list of ``(inputs, labels)`` batches
        or of dict batches (Hugging Face style: the model is called as
        ``model(**batch)`` with every entry but ``labels``; ``labels`` gives
        the classes, ``attention_mask`` the padding; see
        :mod:`dnn_spring.capture._inputs`).  Floating inputs are cast to the model's
        dtype (float64 numpy arrays into a float32 model).  It is read twice
        unless all features fit ``cache_bytes`` (once more with
        ``target="next_token"``, to count the next tokens), so a DataLoader
        must give the same samples each time (no augmentation, no shuffle).
    labels : tensor of shape (n_samples,), optional
        Integer class labels; required when ``data`` is a tensor, except
        with ``target="next_token"`` (then optional, shape (n_samples, T),
        -100 where there is no target).
    layers : None, str, sequence of str, type, tuple of types or callable
        Module names (``"input"`` is the raw input), every module of a type,
        or ``callable(name, module) -> bool``.  By default
        :func:`~dnn_spring.capture._points.default_points`: the model's own
        ``load_curve_layers()``, a wrapper's inner model, a ResNet's blocks,
        a transformer's blocks and head, a Sequential's activations, else the
        top-level children; the input first for floating-point features.
    pool : {"flatten", "mean", "first", "last"} or callable, default="flatten"
        How a sequence output (N, T, d) becomes one row per sample: the T·d
        numbers side by side, the mean over tokens (masked by the batch's
        ``attention_mask``), the first or the last (non-padded) token, or
        ``callable(name, output, batch) -> (N, p) tensor``.  Other shapes
        are always flattened.  See :mod:`dnn_spring.capture._pooling`.
    target : {"label", "next_token"}, default="label"
        ``"next_token"``: every (sequence, position) with a valid next token
        is a sample whose class is that token (a causal language model);
        padding and labels of -100 are skipped.
    output : callable, optional
        ``output(name, module_output) -> tensor`` picks the tensor from a
        module's output; by default a tensor, or the first tensor of a
        tuple, list, dict or Hugging Face ``ModelOutput``.
    max_classes : int, optional
        With ``target="next_token"``, keep only the ``max_classes`` most
        frequent next tokens as classes and skip the other positions.
    class_bytes : int, default=4 GiB
        Budget for the next-token class statistics of all points (about
        three float64 C×p matrices each); above it, one ``ValueError`` gives
        the estimate and the ``max_classes`` that fits.
    distributed : bool or None, default=None
        Sum the statistics over the ranks of ``torch.distributed`` so every
        rank gets the curve of the whole data (None: when a process group is
        initialised).  Call it on every rank with that rank's shard.
    batch_size : int, default=1024
        Chunk size for tensor ``data``.
    device : str or torch.device, optional
        Where to run; default the model's device.
    probes : bool, default=False
        Add the ``lin_residual`` and ``logistic_loss`` probe columns (slower;
        holds each layer's features in memory; not with distributed sums).
    inverse : bool, default=False
        Also form SS_W (p×p) for ``log_inv_d`` and ``log_d_pinv32`` (NaN
        without it, and above ``max_inverse_width``); costs O(N·p²) time and
        an eigendecomposition per point, most of a wide model's time.
    n_classes : int, optional
        Require exactly these classes.
    rtol : float, default=1e-6
        Rank cut-off, see :class:`~dnn_spring.metrics._fuzziness.FuzzinessAccumulator`.
    cache_bytes : int, default=512 MiB
        Keep features up to this size from the first pass to avoid a second
        forward pass.
    method : {"lowrank", "pinv32"}, default="lowrank"
        How SS_B is inverted for ``log_d``; ``"pinv32"`` reproduces the
        original code's float32 pinv (see :mod:`dnn_spring.metrics._conditioning`).
    warn : bool, default=True
        One ``RuntimeWarning`` naming the points where SS_B is near singular,
        one ``UserWarning`` naming flattened sequence points wider than
        :data:`~dnn_spring.capture._pooling.POOL_WARN_WIDTH` columns, and one
        ``UserWarning`` naming the under-sampled points.
    logits : "auto", str, int or None, default="auto"
        Which point is the logits (``is_logits``): ``"auto"`` takes the
        model's ``logits_layer`` when it has one, else the points whose
        tensor is the model's output (see :mod:`dnn_spring.capture._points`); a name
        or a position names it; None says there is none.
    project : int, optional
        Project each point wider than ``project`` columns onto ``project``
        seeded Gaussian directions (scaled by ``1/sqrt(project)``) before the
        statistics: a remedy for under-sampled wide points.
    seed : int, default=0
        Seed of the projection (one matrix per width).

    Returns
    -------
    pandas.DataFrame
        One row per point in forward order with columns ``layer``, ``point``
        (0, 1, ...), ``module``, ``width``, ``n_samples``, ``n_classes``, ``log_d``,
        ``log_inv_d``, ``log_trace_ratio``, ``log_d_pinv32`` (NaN where SS_W
        is not formed: ``inverse=False`` or wider than ``max_inverse_width``),
        ``rank_b``, ``max_rank_b``, ``cond_b``, ``near_singular`` (see
        :func:`~dnn_spring.metrics._fuzziness.separation_stats`),
        ``load`` (drop in log D from the previous point, NaN for the first)
        ``is_logits`` (see ``logits``) and ``under_sampled`` (the width is
        at least ``n_samples − n_classes``, the most directions the
        within-class scatter can span: some directions then have no spread
        within classes and the classes separate trivially there, so log D
        is meaningless), plus the probe columns when asked.  ``frame.attrs["wide_sequences"]`` maps the
        flattened sequence points wider than ``POOL_WARN_WIDTH`` to their width.
    """
    require(range_problem("batch_size", batch_size, 1))
    if project is not None:
        require(range_problem("project", project, 1))
    check_pooling(pool, target, output, max_classes)
    names = resolve_layers(model, layers, data, target)
    device = model_device(model, device)
    next_token = target == "next_token"
    batches = batch_stream(data, labels, batch_size, next_token=next_token)
    summed = use_distributed(distributed)
    if summed and probes:
        raise ValueError("`probes=True` fits its probes on one rank's features: pass distributed=False")
    featurize, budget = Featurizer(pool, target, output, project=project, seed=seed), None
    if next_token:
        ids, counts = count_next_tokens(batches, summed)
        featurize.keep = kept_tokens(ids, counts, max_classes)
        budget = (ids.numel() if featurize.keep is None else featurize.keep.numel(), class_bytes)
    passes = Passes(lambda point: FuzzinessAccumulator(
        n_classes=n_classes, rtol=rtol, inverse=inverse, max_inverse_width=max_inverse_width,
        name=point, method=method, distributed=summed), cache_bytes, probes, budget)
    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad(), HookSet(model, names, featurize) as recorder:
            passes.run(model, recorder, batches, device, summed)
            order, types = recorder.order, recorder.types
    finally:
        for module, flag in flags.items():
            module.training = flag
    found = logits_rows(order, model, logits, recorder.logits_points or set())
    return _frame(model, order, types, passes, featurize.wide, warn, found)


def logits_rows(order: list, model, logits, detected: set) -> set:
    """The points that are the logits, by the rule of :mod:`dnn_spring.capture._points`."""
    if isinstance(logits, str) and logits == "auto":
        own = getattr(model, "logits_layer", None)
        return {own} & set(order) if own is not None else set(detected)
    if logits is None:
        return set()
    if isinstance(logits, str):
        if logits not in order:
            raise ValueError(f"`logits` point {logits!r} is not measured; the points are {order}")
        return {logits}
    require(range_problem("logits", int(logits), -len(order), len(order) - 1))
    return {order[int(logits)]}


def _frame(model, order, types, passes, wide, warn, logits: set) -> pd.DataFrame:
    results = {point: passes.accs[point].result() for point in order}  # same order on every rank
    under = [p for p in order if results[p]["width"] >= results[p]["n_samples"] -
             results[p]["n_classes"]]
    if warn:
        warn_near_singular(list(results.items()), stacklevel=4)
        if wide:
            warn_wide(wide, stacklevel=4)
        if under:
            warn_under_sampled(under, results, stacklevel=4)
    frame = pd.DataFrame([_row(i, point, types[point], results[point], point in logits)
                          for i, point in enumerate(order)])
    frame["under_sampled"] = frame["layer"].isin(under)
    if passes.probes:
        for i, point in enumerate(order):
            feats = torch.cat([f for f, _ in passes.cache[point]])
            ys = torch.cat([y for _, y in passes.cache[point]])
            for key, value in probe_stats(feats, ys).items():
                frame.loc[i, key] = value
    frame.insert(frame.columns.get_loc("is_logits"), "load", -frame["log_d"].diff())
    frame.attrs["wide_sequences"] = dict(wide)
    return frame


def warn_under_sampled(points: list, results: dict, *, stacklevel: int = 3) -> None:
    """One warning naming the under-sampled points, their widths and the remedies."""
    named = ", ".join(f"{p} (width {results[p]['width']:,})" for p in points[:6])
    more = f" and {len(points) - 6} more" if len(points) > 6 else ""
    first = results[points[0]]
    warnings.warn(f"under-sampled load-curve points {named}{more}: {first['n_samples']:,} samples "
                  f"of {first['n_classes']} classes span at most "
                  f"{first['n_samples'] - first['n_classes']:,} within-class directions, so the "
                  f"classes separate trivially there and log D means little (frame column "
                  f"`under_sampled`); use {UNDER_SAMPLED_HELP}", UserWarning, stacklevel=stacklevel)


def _row(index: int, point: str, module_type: str, stats: dict, is_logits: bool) -> dict:
    return {
        "layer": point,
        "point": index,
        "module": module_type,
        "width": stats["width"],
        "n_samples": stats["n_samples"],
        "n_classes": stats["n_classes"],
        "log_d": stats["log_d"],
        "log_inv_d": stats["log_inv_d"],
        "log_trace_ratio": stats["log_trace_ratio"],
        "log_d_pinv32": stats["log_d_pinv32"],
        "rank_b": stats["rank_b"],
        "max_rank_b": stats["max_rank_b"],
        "cond_b": stats["cond_b"],
        "near_singular": stats["near_singular"],
        "is_logits": bool(is_logits),
    }
