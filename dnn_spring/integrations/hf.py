"""A Hugging Face ``Trainer`` callback that tracks the load curve (imports ``transformers`` on use).

    from dnn_spring.integrations.hf import LoadCurveCallback
    callback = LoadCurveCallback(probe, every=100)          # probe: a DataLoader of dict batches
    trainer = Trainer(model=model, args=args, train_dataset=train, callbacks=[callback])
    trainer.train()
    callback.history                                         # as LoadCurveTracker's

The callback makes a :class:`~dnn_spring.capture.LoadCurveTracker` on the Trainer's
model and measures it on the fixed measurement set at the end of every
``every``-th optimiser step (the Trainer's ``global_step``), at every
evaluation (``at_evaluate=True``) and before the first step
(``at_start=True``), at most once per step.  Rows carry the Trainer's
``global_step`` as ``step`` and its completed epochs as ``epoch``.

Every measurement is logged through the Trainer's own ``Trainer.log``, so
it lands in ``trainer.state.log_history`` and reaches every ``report_to``
integration (TensorBoard, W&B, ...) like the loss does:
``load_curve/log_d/<layer>`` for each point, ``load_curve/v`` and
``load_curve/c`` (non-finite values are left out).  The callback finds its
Trainer when the Trainer announces itself (``on_init_end``, or
``on_train_begin`` for a callback added with ``trainer.add_callback``) by
looking for it in the calling frames; set ``callback.trainer`` to choose it
yourself.

Layers default to the model's transformer blocks and its output head
(:func:`~dnn_spring.capture._points.default_points` states the rule); ``layers=``
takes names, a block class or a callable as :func:`~dnn_spring.capture.load_curve`
does.  Under ``torch.distributed`` every process measures (a sharded model
needs every rank for its forward pass) and, as :func:`~dnn_spring.capture.load_curve`
does by default, the statistics are summed over the ranks: give each rank
its shard of the measurement set, or pass ``distributed=False`` to measure each
rank's own measurement set.
"""

from __future__ import annotations

import inspect
import math
import warnings

import pandas as pd

from dnn_spring.capture._points import default_points
from dnn_spring.capture._pooling import check_pooling
from dnn_spring.capture._tracker import SHAPE_COLUMNS, LoadCurveTracker

__all__ = ["LoadCurveCallback"]


def _base():
    try:
        from transformers import TrainerCallback
    except ImportError:
        raise ImportError("LoadCurveCallback needs Hugging Face transformers: "
                          "pip install transformers accelerate") from None
    return TrainerCallback


def _calling_trainer(callback):
    """The ``transformers.Trainer`` in the calling frames that holds ``callback``, or None."""
    from transformers import Trainer

    frame = inspect.currentframe()
    try:
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, Trainer) and callback in owner.callback_handler.callbacks:
                return owner
            frame = frame.f_back
    finally:
        del frame
    return None


class LoadCurveCallback(_base()):
    """Track the load curve of the model a ``transformers.Trainer`` trains.

    Parameters
    ----------
    probe : DataLoader or list of batches, or tensor of shape (n_samples, ...)
        The fixed measurement set, as for :class:`~dnn_spring.capture.LoadCurveTracker`:
        batches as the model takes them (dicts of ``input_ids``,
        ``attention_mask``, ``labels``, ...), used as given, so they must be
        the same samples every time.
    labels : array-like of int of shape (n_samples,), optional
        Class labels when ``probe`` is a tensor.
    every : int or None, default=100
        Measure after every ``every``-th optimiser step; None: only at
        evaluations (``at_evaluate``) and at the start (``at_start``).
    layers : optional
        Which points; default the model's transformer blocks and its head
        (:func:`~dnn_spring.capture._points.default_points`).
    pool : {"mean", "first", "last", "flatten"} or callable, optional
        How a block's (batch, tokens, width) output becomes one feature
        vector per sample (see :func:`~dnn_spring.capture.load_curve`).  Default
        ``"mean"`` (over the tokens whose ``attention_mask`` is 1), and
        ``"flatten"`` with ``target="next_token"``, where every position is a
        sample and nothing is pooled.
    target : {"label", "next_token"}, default="label"
        Classes: the batch's ``labels`` (one per sequence), or the next token
        at every position.
    at_evaluate : bool, default=False
        Also measure at every evaluation.
    at_start : bool, default=False
        Also measure before the first step (step 0).
    log : bool, default=True
        Log through ``Trainer.log``.
    prefix : str, default="load_curve"
        Prefix of the logged names.
    **tracker_kwargs
        Further :class:`~dnn_spring.capture.LoadCurveTracker` options (``output``,
        ``sample_size``, ``seed``, ``batch_size``, ...).

    Attributes
    ----------
    tracker : LoadCurveTracker or None
        Made when the Trainer starts.
    trainer : transformers.Trainer or None
        The Trainer that logs the measurements.
    """

    def __init__(self, probe, labels=None, *, every: "int | None" = 100, layers=None,
                 pool=None, target: str = "label", at_evaluate: bool = False,
                 at_start: bool = False, log: bool = True, prefix: str = "load_curve",
                 **tracker_kwargs):
        super().__init__()
        if every is not None and (isinstance(every, bool) or not isinstance(every, int)
                                  or every < 1):
            raise ValueError(f"`every` must be an int >= 1 or None, got {every!r}")
        if pool is None:
            pool = "flatten" if target == "next_token" else "mean"
        check_pooling(pool, target, tracker_kwargs.get("output"), tracker_kwargs.get("max_classes"))
        self.probe, self.labels, self.every, self.layers = probe, labels, every, layers
        self.pool, self.target, self.at_evaluate = pool, target, at_evaluate
        self.at_start, self.log, self.prefix = at_start, log, prefix
        self.tracker_kwargs = tracker_kwargs
        self.tracker = None
        self.trainer = None
        self._last_step = None
        self._warned = False

    # -- the Trainer's events -------------------------------------------------
    def on_init_end(self, args, state, control, model=None, **kwargs):
        self.trainer = self.trainer or _calling_trainer(self)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.trainer = self.trainer or _calling_trainer(self)
        self._bind(model)
        if self.at_start:
            self._measure(state, control)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every is not None and state.global_step % self.every == 0:
            self._bind(model)
            self._measure(state, control)

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if self.at_evaluate:
            self._bind(model)
            self._measure(state, control)

    # -- measuring -------------------------------------------------------------
    def _bind(self, model) -> None:
        if model is None:
            return
        if self.tracker is None:
            layers = self.layers if self.layers is not None else default_points(model)
            self.tracker = LoadCurveTracker(model, self.probe, self.labels, layers=layers,
                                            pool=self.pool, target=self.target,
                                            **self.tracker_kwargs)
        self.tracker.model = model  # a later train() measures the model it trains

    def _measure(self, state, control) -> "pd.DataFrame | None":
        if self.tracker is None or self._last_step == state.global_step:
            return None
        self._last_step = state.global_step
        self.tracker.steps = int(state.global_step)
        self.tracker.epochs = int(math.floor(state.epoch or 0.0))
        rows = self.tracker.measure()
        if self.log:
            self._log(rows, state, control)
        return rows

    def metrics(self, rows: pd.DataFrame) -> dict:
        """The logged values of one measurement: ``{prefix}/log_d/<layer>``, ``/v``, ``/c``."""
        values = {f"{self.prefix}/log_d/{layer}": log_d
                  for layer, log_d in zip(rows["layer"], rows["log_d"])}
        values[f"{self.prefix}/v"] = rows["v"].iloc[0]
        values[f"{self.prefix}/c"] = rows["c"].iloc[0]
        return {k: float(v) for k, v in values.items()
                if v is not None and math.isfinite(float(v))}

    def _log(self, rows, state, control) -> None:
        values = self.metrics(rows)
        if self.trainer is not None:
            # Trainer.log clears should_log; keep the Trainer's own log of this step (the loss)
            should_log = control.should_log
            self.trainer.log(values)
            control.should_log = self.trainer.control.should_log = should_log
        else:  # no Trainer found: keep them in the state's history at least
            if not self._warned:
                self._warned = True
                warnings.warn("LoadCurveCallback found no transformers.Trainer to log through; the "
                              "values go to state.log_history only (set callback.trainer)",
                              RuntimeWarning, stacklevel=2)
            state.log_history.append({**values, "step": state.global_step})

    @property
    def history(self) -> pd.DataFrame:
        """Every measurement so far, one row per measurement and point (the tracker's columns)."""
        if self.tracker is None:
            return pd.DataFrame(columns=["measurement", "step", "epoch", "layer", "point",
                                         "log_d", "load", *SHAPE_COLUMNS])
        return self.tracker.history
