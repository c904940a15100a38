"""A PyTorch Lightning callback that tracks the load curve (imports ``lightning`` on use).

    from dnn_spring.integrations.lightning import LoadCurveCallback
    callback = LoadCurveCallback(x_probe, y_probe, every=1)          # every epoch
    trainer = lightning.Trainer(callbacks=[callback], max_epochs=10)
    trainer.fit(module, loader)
    callback.history                                                  # as LoadCurveTracker's

The callback makes a :class:`~dnn_spring.capture.LoadCurveTracker` on the
LightningModule when fitting starts and measures it at the end of every
``every``-th training epoch (``interval="epoch"``) or batch
(``interval="step"``), on global rank 0 only, with the trainer's own
counters as ``step`` (global step) and ``epoch`` (epochs done), so a resumed
fit goes on counting.  Rank 0 runs the forward pass alone: with a sharded
strategy (FSDP, DeepSpeed ZeRO-3) that would wait for the other ranks, so
use the callback with data-parallel or single-device training.  Rank 0 measures its
measurement set alone (``distributed=False`` unless given), so no collective waits on
the other ranks.  It logs the curve's ``c``,
``v`` and the last hidden point's log D through ``pl_module.log`` as
``load_curve/c``, ``load_curve/v`` and ``load_curve/final_log_d``.
"""

from __future__ import annotations

import math

from dnn_spring.capture._tracker import LoadCurveTracker

__all__ = ["LoadCurveCallback"]


def _base():
    try:
        from lightning.pytorch.callbacks import Callback
    except ImportError:
        try:
            from pytorch_lightning.callbacks import Callback
        except ImportError:
            raise ImportError("LoadCurveCallback needs PyTorch Lightning: pip install lightning") from None
    return Callback


class LoadCurveCallback(_base()):
    """Track the load curve of the module being fitted.

    Parameters
    ----------
    data, labels
        The measurement set, as for :class:`~dnn_spring.capture.LoadCurveTracker`.
    every : int, default=1
        Measure every ``every`` epochs (or steps).
    interval : {"epoch", "step"}, default="epoch"
    log : bool, default=True
        Log ``load_curve/c``, ``/v`` and ``/final_log_d`` with ``pl_module.log``.
    **tracker_kwargs
        Further :class:`~dnn_spring.capture.LoadCurveTracker` options (``layers``,
        ``logits``, ``sample_size``, ``seed``, ...).  By default the points
        are those of the model the LightningModule wraps (a module whose
        parameters all sit in one child, ``self.net``, is looked through; see
        :func:`~dnn_spring.capture._points.default_points`).
    """

    def __init__(self, data, labels=None, *, every: int = 1, interval: str = "epoch",
                 log: bool = True, **tracker_kwargs):
        super().__init__()
        if interval not in ("epoch", "step"):
            raise ValueError(f"`interval` must be 'epoch' or 'step', got {interval!r}")
        self.data, self.labels, self.every, self.interval = data, labels, every, interval
        self.log, self.tracker_kwargs = log, {"distributed": False, **tracker_kwargs}
        self.tracker = None

    @property
    def history(self):
        """Every measurement so far (:attr:`LoadCurveTracker.history`); empty before fitting."""
        if self.tracker is None:
            import pandas as pd

            return pd.DataFrame()
        return self.tracker.history

    def on_fit_start(self, trainer, pl_module):
        if self.tracker is None:
            self.tracker = LoadCurveTracker(pl_module, self.data, self.labels, every=self.every,
                                            **self.tracker_kwargs)
        self.tracker.model = pl_module  # a later fit() measures the module it fits

    def _sync(self, trainer) -> None:
        # the trainer's counters (global step, epochs done), so a resumed fit goes on counting
        self.tracker.steps = int(trainer.global_step)
        self.tracker.epochs = int(trainer.current_epoch) + 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.interval == "step" and trainer.global_rank == 0:
            self._sync(trainer)
            if self.tracker.steps % self.every == 0:
                self._logged(pl_module, self.tracker.measure())

    def on_train_epoch_end(self, trainer, pl_module):
        if self.interval == "epoch" and trainer.global_rank == 0:
            self._sync(trainer)
            if self.tracker.epochs % self.every == 0:
                self._logged(pl_module, self.tracker.measure())

    def _logged(self, pl_module, rows) -> None:
        if rows is None or not self.log:
            return
        hidden = rows[~rows["is_logits"].astype(bool)]
        values = {"load_curve/c": rows["c"].iloc[0], "load_curve/v": rows["v"].iloc[0],
                  "load_curve/final_log_d": hidden["log_d"].iloc[-1] if len(hidden) else math.nan}
        for name, value in values.items():
            if value is not None and math.isfinite(float(value)):
                pl_module.log(name, float(value), rank_zero_only=True)
