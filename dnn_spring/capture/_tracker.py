"""The load curve while a model trains: :class:`LoadCurveTracker`.

A tracker holds a fixed measurement set and measures :func:`~dnn_spring.capture.load_curve`
on it every ``every`` calls of :meth:`~LoadCurveTracker.step` (or of
:meth:`~LoadCurveTracker.epoch_end`, counted separately).  Each measurement
runs in eval mode under ``no_grad`` and restores every module's own training
flag (``load_curve`` does), so it can sit inside any training loop::

    tracker = LoadCurveTracker(model, x_train, y_train, every=100)
    for x, y in loader:
        ...                      # forward, backward, optimiser step
        tracker.step()
    tracker.history              # one row per measurement and layer
    tracker.plot()               # log D per layer against step

The measurement set is fixed once: with tensor data, a seeded random subset of
``sample_size`` samples (all of them when there are fewer), drawn with
``torch.Generator().manual_seed(seed)`` and kept in data order; a
re-iterable of ``(inputs, labels)`` batches (a DataLoader) is used as given
and must give the same samples every time.  Give it clean labels: the load
curve measures how the classes are separated, not how the noisy labels are fitted.

Transformers and language models take the same options as
:func:`~dnn_spring.capture.load_curve`::

    batches = [dict(tokenizer(texts[i:i + 16], padding=True, return_tensors="pt"), labels=y[i:i + 16])
             for i in range(0, 256, 16)]                     # a list of dict batches
    tracker = LoadCurveTracker(model, batches, layers=Block, pool="mean", every=100)
    lm = LoadCurveTracker(lm_model, lm_batches, layers=Block, target="next_token", max_classes=4096)

A dict batch is passed to the model as ``model(**batch)`` without its
``labels`` entry (the classes; with ``target="next_token"`` optional, the
next tokens then come from ``input_ids``); ``attention_mask`` marks the
padding for ``pool="mean"``/``"last"`` and for the next-token positions.

Under ``torch.distributed`` (``distributed=None``, the default, sums when a
process group is initialised) every rank must call :meth:`~LoadCurveTracker.step`,
:meth:`~LoadCurveTracker.epoch_end` or :meth:`~LoadCurveTracker.measure` at the
same counts, each on its shard of the measurement set; every rank then gets the
curve of the union of the shards.  The same measurement set on every rank gives the
one-rank curve (each sample counted once per rank leaves every statistic as
it is).  To measure on one rank alone, pass ``distributed=False``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from dnn_spring._style import figure_style
from dnn_spring.capture._load_curve import load_curve, warn_under_sampled
from dnn_spring._checks import UNSET, range_problem, renamed, require
from dnn_spring.metrics._conditioning import warn_near_singular
from dnn_spring.capture._pooling import NEXT_TOKEN_BYTES, check_pooling, warn_wide
from dnn_spring.metrics._shape import load_shape

__all__ = ["LoadCurveTracker", "SHAPE_COLUMNS"]

#: Per-measurement shape statistics repeated on every row of a measurement.
SHAPE_COLUMNS = ("v", "c", "c_rel", "fit_slope", "fit_r2", "regime")
_DEFAULT_SAMPLE = 512


class LoadCurveTracker:
    """Measure a model's load curve every ``every`` steps or epochs of its training.

    Parameters
    ----------
    model : nn.Module
    data : tensor or ndarray of shape (n_samples, ...), or re-iterable of batches
        The inputs to measure on, or batches (used as given) of ``(inputs, labels)``
        or dicts (``model(**batch)`` without ``labels``).
    labels : array-like of int of shape (n_samples,), optional
        Required with tensor data.
    every : int, default=1
        Measure when the call count of :meth:`step` (or :meth:`epoch_end`) is
        a multiple of ``every``.
    layers : see :func:`~dnn_spring.capture.load_curve`
        Which points to measure (default:
        :func:`~dnn_spring.capture._points.default_points`, the same points as
        :func:`~dnn_spring.capture.load_curve` and :func:`~dnn_spring.capture._diagnose`).
    sample_size : int or None, default=512
        Samples of tensor data kept as the measurement set (a seeded subset); None
        keeps all.
    seed : int, default=0
        Seed of the subset.
    method : {"lowrank", "pinv32"}, default="lowrank"
    pool : {"flatten", "mean", "first", "last"} or callable, default="flatten"
        How a sequence output (N, T, d) becomes one row per sample.
    target : {"label", "next_token"}, default="label"
        ``"next_token"``: the classes are the next tokens (tensor data: token
        ids of shape (n_samples, T), labels optional).
    output : callable, optional
        ``output(name, module_output) -> tensor``; default: the first tensor.
    max_classes : int, optional
        With ``target="next_token"``: keep the most frequent next tokens only.
    distributed : bool or None, default=None
        Sum the statistics over the ranks (None: when a process group is
        initialised).
    batch_size, device, n_classes, class_bytes
        Passed to :func:`~dnn_spring.capture.load_curve`.
    warn : bool, default=True
        Give the near-singular, wide-sequence and under-sampled warnings of
        :func:`~dnn_spring.capture.load_curve`, and one when the curve has fewer than
        3 points without the logits (its shape is then NaN), each once per
        tracker; records keep ``rank_b`` and ``cond_b`` anyway.
    logits : "auto", str, int or None, default="auto"
        Which point is the logits (see :func:`~dnn_spring.capture.load_curve`).
    project : int, optional
        A seeded random projection of wide points (see
        :func:`~dnn_spring.capture.load_curve`).

    Attributes
    ----------
    steps, epochs : int
        Calls of :meth:`step` and :meth:`epoch_end` so far.
    """

    def __init__(self, model, data, labels=None, *, every: int = 1, layers=None,
                 sample_size: "int | None" = _DEFAULT_SAMPLE, seed: int = 0, method: str = "lowrank",
                 pool="flatten", target: str = "label", output=None, max_classes=None,
                 distributed=None, batch_size: int = 1024, device=None, n_classes=None,
                 class_bytes: int = NEXT_TOKEN_BYTES, warn: bool = True, logits="auto",
                 project: "int | None" = None, probe_size=UNSET):
        sample_size = renamed("probe_size", probe_size, "sample_size", sample_size)
        require(range_problem("every", every, 1))
        if sample_size is not None:
            require(range_problem("sample_size", sample_size, 2))
        check_pooling(pool, target, output, max_classes)
        self.model = model
        self.every = int(every)
        self.layers = layers
        self.method = method
        self._kwargs = {"batch_size": batch_size, "device": device, "n_classes": n_classes,
                        "pool": pool, "target": target, "output": output,
                        "max_classes": max_classes, "class_bytes": class_bytes,
                        "distributed": distributed, "logits": logits, "project": project}
        self._data, self._labels = _measurement_set(data, labels, sample_size, seed, target == "next_token")
        self.steps = 0
        self.epochs = 0
        self._frames = []
        self._warned = self._warned_wide = self._warned_few = self._warned_under = not warn

    # -- counting -----------------------------------------------------------
    def step(self) -> "pd.DataFrame | None":
        """Count one training step; measure (and return the rows) on every ``every``-th."""
        self.steps += 1
        return self.measure() if self.steps % self.every == 0 else None

    def epoch_end(self) -> "pd.DataFrame | None":
        """Count one epoch; measure (and return the rows) on every ``every``-th."""
        self.epochs += 1
        return self.measure() if self.epochs % self.every == 0 else None

    # -- measuring ------------------------------------------------------------
    def measure(self, model=None, *, keep: bool = True) -> pd.DataFrame:
        """Measure now (``model``: another model on the same measurement set) and keep the rows
        in :attr:`history` (unless ``keep`` is False).

        Returns
        -------
        DataFrame
            The :func:`~dnn_spring.capture.load_curve` rows with ``measurement`` (0, 1,
            ...; -1 when not kept), ``step`` and ``epoch`` in front and the curve's shape statistics (:data:`SHAPE_COLUMNS`,
            NaN/None when the curve has no shape) on every row.
        """
        frame = load_curve(model if model is not None else self.model, self._data, self._labels,
                           self.layers, inverse=False, method=self.method, warn=False,
                           **self._kwargs)
        if not self._warned and frame["near_singular"].any():  # once per tracker
            self._warned = True
            warn_near_singular([(row["layer"], row) for _, row in frame.iterrows()], stacklevel=3)
        if not self._warned_wide and frame.attrs.get("wide_sequences"):
            self._warned_wide = True
            warn_wide(frame.attrs["wide_sequences"], stacklevel=3)
        if not self._warned_under and frame["under_sampled"].any():
            self._warned_under = True
            rows = frame[frame["under_sampled"]]
            warn_under_sampled(list(rows["layer"]), {r["layer"]: r for _, r in rows.iterrows()},
                               stacklevel=3)
        hidden = int((~frame["is_logits"].astype(bool)).sum())
        if not self._warned_few and hidden < 3:
            self._warned_few = True
            warnings.warn(f"the load curve has {hidden} point(s) without the logits "
                          f"({list(frame['layer'])}); its shape (c, v, regime) needs at least 3 "
                          "and is NaN: pass `layers=`", UserWarning, stacklevel=3)
        frame.insert(0, "measurement", len(self._frames) if keep else -1)
        frame.insert(1, "step", self.steps)
        frame.insert(2, "epoch", self.epochs)
        for name, value in _shape_stats(frame).items():
            frame[name] = value
        if keep:
            self._frames.append(frame)
        return frame

    @property
    def history(self) -> pd.DataFrame:
        """Every measurement so far: one row per measurement and layer."""
        if not self._frames:
            return pd.DataFrame(columns=["measurement", "step", "epoch", "layer", "point", "log_d", "load",
                                         *SHAPE_COLUMNS])
        return pd.concat(self._frames, ignore_index=True)

    def curves(self, x: str = "step") -> "tuple[np.ndarray, np.ndarray, list]":
        """``(times, log_d, layers)``: ``times`` the ``x`` ("step" or "epoch") of each
        measurement, ``log_d`` of shape (measurements, points)."""
        if x not in ("step", "epoch"):
            raise ValueError(f"`x` must be 'step' or 'epoch', got {x!r}")
        history = self.history
        if not len(history):
            raise ValueError("nothing measured yet: call step(), epoch_end() or measure()")
        table = history.pivot(index="measurement", columns="point", values="log_d")
        times = history.groupby("measurement")[x].first().to_numpy()
        names = history.drop_duplicates("point").sort_values("point")["layer"].tolist()
        return times, table.to_numpy(dtype=float), names

    def plot(self, *, x: str = "step", logits: bool = False):
        """log D of every point against ``x`` ("step" or "epoch"), input dark to output light.

        The logits point is left out unless ``logits``.  Returns a Figure.
        """
        if x not in ("step", "epoch"):
            raise ValueError(f"`x` must be 'step' or 'epoch', got {x!r}")
        import matplotlib.pyplot as plt

        history = self.history
        if not len(history):
            raise ValueError("nothing measured yet: call step(), epoch_end() or measure()")
        keep = history if logits else history[~history["is_logits"].astype(bool)]
        points = sorted(keep["point"].unique())
        colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(points), 1)))
        with figure_style():
            fig, ax = plt.subplots(figsize=(5.0, 3.4), layout="constrained")
            for color, point in zip(colors, points):
                rows = keep[keep["point"] == point]
                ax.plot(rows[x], rows["log_d"], color=color, lw=1.2,
                        label=f"{point}: {rows['layer'].iloc[0]}")
            ax.set_xlabel(x)
            ax.set_ylabel("log D")
            ax.legend(fontsize=6, ncol=2 if len(points) > 6 else 1)
        return fig


def _measurement_set(data, labels, sample_size, seed, next_token=False):
    if isinstance(data, (torch.Tensor, np.ndarray)):
        if labels is None and not next_token:
            raise ValueError("`labels` is required when `data` is a tensor")
        x = torch.as_tensor(data)
        y = None if labels is None else torch.as_tensor(labels)
        if y is not None and x.shape[0] != y.shape[0]:
            raise ValueError(f"`data` has {x.shape[0]} samples but `labels` has {y.shape[0]}")
        if sample_size is not None and x.shape[0] > sample_size:
            gen = torch.Generator().manual_seed(int(seed))
            keep = torch.randperm(x.shape[0], generator=gen)[:sample_size].sort().values
            x, y = x[keep], None if y is None else y[keep]
        return x, y
    if labels is not None:
        raise ValueError("`labels` must be None when `data` is an iterable of (inputs, labels) batches")
    if isinstance(data, Mapping) or iter(data) is data:
        raise TypeError("the measurement set is read at every measurement: pass a re-iterable "
                        "(a list or a DataLoader), not a one-shot iterator or a single dict batch")
    return data, None


def _shape_stats(frame: pd.DataFrame) -> dict:
    try:
        shape = load_shape(frame)
    except ValueError:  # a collapsed layer (inf) or too few points
        return {"v": np.nan, "c": np.nan, "c_rel": np.nan, "fit_slope": np.nan,
                "fit_r2": np.nan, "regime": None}
    return {"v": shape.v, "c": shape.c, "c_rel": shape.c_rel, "fit_slope": shape.slope,
            "fit_r2": shape.r2, "regime": shape.regime}
