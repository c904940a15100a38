"""Batched training: N small MLPs (or CNNs) trained at once as one network.

A row of the phase diagram (one noise level, six slopes, ten seeds) is 60
networks of the same shape.  Trained one at a time with small batches, most of
the time goes to Python and kernel-launch overhead; stacking them
(:class:`~dnn_spring.train._group_mlp.GroupMLP`) turns every ``Linear`` into one
batched product on parameters of shape (N, out, in) and every optimiser
update into one fused pass over a flat (N, S) buffer.  CNN groups stack the
same way (:class:`~dnn_spring.train._group_cnn.GroupCNN`, grouped convolutions).

Members share the architecture, the data set and the batch size
(:func:`~dnn_spring.train._grouping.group_key`); each has its own seed
(initialisation, data order, noise draws, dropout masks, Langevin noise),
LeakyReLU slope α, dropout p, learning rate, data/label-noise level, init
scheme/scale and SGLD temperature.  The rules of each epoch (data order,
noise, stopping, divergence) are those of :mod:`dnn_spring.train._rules`; for the
MLP with BatchNorm a last batch of a single sample is skipped, as BatchNorm
cannot train on it.

A member that stops early or diverges is *retired* at the end of that epoch:
its parameters are copied out and it is dropped from the stacked tensors, so
the others go on untouched (and faster).  A NaN in one member cannot reach
another.

A member's numbers do not depend on its group: the same config gives the
same record bit for bit in a group of one or in any group, at any position
(on a given machine and thread count; see :mod:`dnn_spring.train._member_ops`).
A lone MLP of :func:`dnn_spring.train._run.train_run` runs this loop over the
plain kernels of :class:`~dnn_spring.train._lone_mlp.LoneMLP` instead, unless
asked for a group of one (``grouped=True``, as sweeps do).
Batched products rather than ``torch.func.vmap``: they were the faster of the
two (benchmarks/README.md).

On a CPU batching pays off at small batches (Python and dispatch overhead is
shared by N members); at full batch a single run already keeps the core busy,
and more than a few members of 2560 samples spill the caches, so
:func:`~dnn_spring.train._grouping.max_group_size` caps groups on the CPU by
activation size.
"""

from __future__ import annotations

import contextlib
import time

import torch
from tqdm.auto import tqdm

from dnn_spring.train._checkpoint import resume_checkpoint, save_checkpoint
from dnn_spring.train._data import load_dataset
from dnn_spring.train._cuda_graphs import StepGraphs, cuda_graphs_enabled
from dnn_spring.train._grouping import check_group
from dnn_spring.train._preempt import Preempted, checkpointing, stop_requested
from dnn_spring.train import _rng as rng
from dnn_spring.train._rules import epochs_above, resolve_device, stop_reason
from dnn_spring.train._record import (fail_record, finish_or_fail, finite_or_none, new_record,
                                      trajectory_point, trajectory_tracker)
from dnn_spring.train._group_mlp import GroupMLP
from dnn_spring.train._group_cnn import GroupCNN
from dnn_spring.train._lone_mlp import LoneMLP

__all__ = ["train_group", "GroupLoop", "group_model"]


def group_model(configs: list, data, device: torch.device, *, lone: bool = False):
    """The stacked network of a group: a GroupCNN for CNN configs (images (n, C, H, W)),
    else a GroupMLP (flat inputs (n, features)); with ``lone``, one MLP config gets a
    :class:`~dnn_spring.train._lone_mlp.LoneMLP` (the plain kernels)."""
    if configs[0].model.arch == "cnn":
        return GroupCNN(configs, data.input_shape, data.n_classes, device)
    kind = LoneMLP if lone and len(configs) == 1 else GroupMLP
    return kind(configs, data.x_train.shape[1], data.n_classes, device)


class GroupLoop:
    """The epoch loop of one batched group, until every member has stopped.

    Attributes
    ----------
    model : GroupMLP, LoneMLP or GroupCNN
        The active members (``lone``: one MLP config gets a LoneMLP).
    epoch : int
        Epochs done.
    previous, above : list
        Per active member: last epoch's mean loss (None before the first) and
        the epochs in a row above the divergence threshold.
    outcome : list of dict
        Per member of the group (in ``configs`` order): ``epochs_run``,
        ``train_loss``, ``stop_reason``, ``model`` (the trained MLP or CNN; None
        when diverged) and ``trajectory``, filled as members stop.
    """

    def __init__(self, configs: list, data, device: torch.device, *, cuda_graphs=None,
                 lone: bool = False):
        self.data, self.device = data, device
        graphs = cuda_graphs_enabled(cuda_graphs, device)
        # a step captured in CUDA graphs is the group's: a lone MLP is then a group of one
        self.model = group_model(configs, data, device, lone=lone and not graphs)
        self.graphs = StepGraphs(self.model) if graphs else None
        self.train = configs[0].train
        self.epoch, self.previous, self.above = 0, [None] * len(configs), [0] * len(configs)
        self.outcome = [{} for _ in configs]
        self.x_std = float(data.x_train.std())
        self._inputs = self._levels = None

    def forget_inputs(self) -> None:
        """Drop the cached full-batch inputs and step graphs (the members changed)."""
        self._inputs = self._levels = None
        if self.graphs is not None:
            self.graphs.clear(self.model)

    def epoch_data(self) -> tuple:
        """Each member's reordered, noisy training set: inputs (N, n_in, n) (a model with
        ``SAMPLES_FIRST``: (N, n, n_in)), labels (N, n)."""
        X, Y, model = self.data.x_train, self.data.y_train, self.model
        batch_size = self.train.batch_size
        full = batch_size == 0 or batch_size >= len(X)
        if full and not any(model.noise) and self._inputs is not None:
            return self._inputs
        if any(model.noise) and self._levels is None:
            self._levels = rng.noise_levels(model.noise, self.x_std, self.device)
        x, y = rng.epoch_samples(X, Y, model.keys, self.epoch, shuffle=not full,
                                     noise=model.noise, x_std=self.x_std, n_classes=model.n_out,
                                     levels=self._levels)
        samples_first = getattr(model, "SAMPLES_FIRST", False)
        out = (x if samples_first else x.transpose(1, 2)).contiguous(), y.contiguous()
        if full and not any(model.noise):
            self._inputs = out
        return out

    def run_epoch(self) -> torch.Tensor:
        """One epoch of every active member; their mean training losses (N,), on the device."""
        xe, ye = self.epoch_data()
        n, batch_size = ye.shape[1], self.train.batch_size
        samples_first = getattr(self.model, "SAMPLES_FIRST", False)
        step = n if batch_size == 0 or batch_size >= n else batch_size
        total = torch.zeros(self.model.weights.flat.shape[0], device=self.device)
        seen = 0
        for s in range(0, n, step):
            if self.model.bn and n - s == 1 and isinstance(self.model, GroupMLP):
                break  # BatchNorm1d cannot train on a last batch of one sample; skip it
            xb = xe[:, s:s + step] if samples_first else xe[:, :, s:s + step].contiguous()
            yb = ye[:, s:s + step]
            losses = (self.graphs or self.model).step(xb, yb)
            total += losses * yb.shape[1]
            seen += yb.shape[1]
        return total / seen

    def record_trajectory(self, skip=()) -> None:
        """Append each active member's load curve (log D), clean train acc and loss at this epoch.

        Members at the positions ``skip`` (those that diverged this epoch:
        their weights may be NaN) get no entry.
        """
        if getattr(self, "_tracker", None) is None:  # one probe set for every member and epoch
            self._tracker = trajectory_tracker(None, self.data)
        for pos, i in enumerate(self.model.ids):
            if pos in skip:
                continue
            point = trajectory_point(self.model.export(pos), self.data, self._tracker)
            self.outcome[i].setdefault("trajectory", []).append({"epoch": self.epoch, **point})

    def read_epoch(self, means: torch.Tensor) -> tuple:
        """(mean losses, parameters finite): one read from the device per epoch."""
        n = len(self.model.ids)  # rows past n: the phantom copy of a lone member
        both = torch.stack([means[:n], self.model.finite()[:n].to(means.dtype)]).tolist()
        return both[0], [bool(f) for f in both[1]]

    def stops(self, means: list, finite: list) -> dict:
        """``{position: stop_reason}`` of the members that stop after this epoch."""
        out = {}
        for pos, (i, mean) in enumerate(zip(self.model.ids, means)):
            self.outcome[i].update(epochs_run=self.epoch, train_loss=mean)
            self.above[pos] = epochs_above(self.above[pos], mean, self.model.n_out)
            reason = stop_reason(mean, self.previous[pos], self.train, finite=finite[pos],
                                 epochs_above=self.above[pos], last=self.epoch == self.train.epochs)
            if reason:
                out[pos] = reason
        return out

    def retire(self, reasons: dict) -> None:
        """Copy out the members ``{position: stop_reason}`` and drop them from the stack."""
        for pos, reason in reasons.items():
            out = self.outcome[self.model.ids[pos]]
            out["stop_reason"] = reason
            out["model"] = self.model.export(pos) if reason != "diverged" else None
        keep = [pos for pos in range(len(self.model.ids)) if pos not in reasons]
        self.previous = [self.previous[pos] for pos in keep]
        self.above = [self.above[pos] for pos in keep]
        self.model.keep(keep)
        self.forget_inputs()

    def fit(self, progress: bool = False, checkpoint=None, checkpoint_every: float = 300.0) -> None:
        """Train until every member has stopped; fills ``outcome``.

        With ``checkpoint`` (a file path), go on from the state saved there if
        it belongs to this group, and save the state there at the end of an
        epoch once ``checkpoint_every`` seconds have passed since the last save,
        or when a stop was requested (:mod:`dnn_spring.train._preempt`); it then
        raises :class:`~dnn_spring.train._preempt.Preempted`.
        """
        with checkpointing() if checkpoint is not None else contextlib.nullcontext():
            self._fit(progress, checkpoint, checkpoint_every)

    def _fit(self, progress, checkpoint, checkpoint_every) -> None:
        resumed = checkpoint is not None and resume_checkpoint(checkpoint, self)
        if not resumed and self.train.curve_every:
            self.record_trajectory()
        last_save = time.monotonic()
        bar = tqdm(range(self.epoch + 1, self.train.epochs + 1), disable=not progress,
                   desc="epochs", leave=False)
        for self.epoch in bar:
            means, finite = self.read_epoch(self.run_epoch())
            stops = self.stops(means, finite)
            if self.train.curve_every and self.epoch % self.train.curve_every == 0:
                self.record_trajectory(skip={p for p, r in stops.items() if r == "diverged"})
            bar.set_postfix(active=len(self.model.ids), loss=f"{sum(means) / len(means):.4g}")
            self.previous = means
            if stops:
                self.retire(stops)
            if not self.model.ids:
                break
            stop = stop_requested()
            if checkpoint is not None and (stop or time.monotonic() - last_save >= checkpoint_every):
                save_checkpoint(checkpoint, self)
                last_save = time.monotonic()
                if stop:
                    bar.close()
                    raise Preempted(f"stop requested: epoch {self.epoch} saved to {checkpoint}")
        if self.model.ids:
            self.retire({pos: "epochs" for pos in range(len(self.model.ids))})
        bar.close()


def train_group(configs: list, *, device="cpu", progress: bool = False, checkpoint=None,
                checkpoint_every: float = 300.0, return_models: bool = False, cuda_graphs=None):
    """Train compatible MLP (or CNN) configs as one batched model; one run record each.

    Parameters
    ----------
    configs : list of RunConfig
        MLP or CNN configs with equal :func:`~dnn_spring.train._grouping.group_key` (they
        may differ in :data:`~dnn_spring.train._grouping.MEMBER_FIELDS`).
    device : str or torch.device, default "cpu"
    progress : bool, default False
        Show a tqdm bar over epochs.
    checkpoint : str or Path, optional
        File for the group's training state: saved at the end of an epoch
        every ``checkpoint_every`` seconds, and read at the start, so a killed
        group goes on from its last save with the same numbers as an
        uninterrupted one.  A checkpoint of another group, or an unreadable
        one, is reported in one warning and ignored.  The caller deletes it
        once the records are safe (the sweep runner does).
    checkpoint_every : float, default 300.0
        Seconds between saves.
    cuda_graphs : bool, optional
        On a CUDA device, replay each training step from a CUDA graph
        (:mod:`dnn_spring.train._cuda_graphs`); None reads ``DNN_SPRING_CUDA_GRAPHS``.
        Ignored on the CPU.
    return_models : bool, default False
        Also return the trained models (each an :class:`~dnn_spring.train._models.MLP`
        or :class:`~dnn_spring.train._models.CNN` in eval mode; None for a diverged or failed run).

    Returns
    -------
    list of dict, or (list of dict, list of nn.Module or None)
        Run records in the order of ``configs``, in the format of
        :func:`dnn_spring.train._run.train_run`.  ``wall_time`` is the member's
        share of the group's training time plus its own evaluation time.

    Raises
    ------
    TypeError, ValueError
        The configs cannot form one group (see
        :func:`~dnn_spring.train._grouping.check_group`), or ``device`` is invalid.
    """
    return _train(check_group(configs), device, progress, checkpoint, checkpoint_every,
                  return_models, cuda_graphs)


def _train(configs, device, progress, checkpoint, checkpoint_every, return_models, cuda_graphs,
           lone=False):
    """:func:`train_group` of checked configs; ``lone``: a lone MLP gets the plain kernels."""
    dev = resolve_device(device)
    start = time.perf_counter()
    records = [new_record(c, dev) for c in configs]
    try:
        data = load_dataset(configs[0].data, device=dev, flatten=configs[0].model.arch == "mlp")
        fit = GroupLoop(configs, data, dev, cuda_graphs=cuda_graphs, lone=lone)
        fit.fit(progress, checkpoint, checkpoint_every)
    except Exception as exc:  # noqa: BLE001 - a run never kills its caller
        share = (time.perf_counter() - start) / len(configs)
        for record in records:
            fail_record(record, exc)["wall_time"] = share
        return (records, [None] * len(records)) if return_models else records
    share = (time.perf_counter() - start) / len(configs)
    for record, out, config in zip(records, fit.outcome, configs):
        t0 = time.perf_counter()
        record.update(stop_reason=out["stop_reason"], epochs_run=out["epochs_run"],
                      trajectory=out.get("trajectory", []),
                      train_loss=finite_or_none(out["train_loss"]))
        if out["stop_reason"] == "diverged":
            record["status"] = "diverged"
        else:
            finish_or_fail(record, out["model"], data, hessian=config.train.hessian)
        record["wall_time"] = share + time.perf_counter() - t0
    if return_models:
        return records, [out["model"].eval() if r["status"] == "ok" and out.get("model") is not None
                         else None for r, out in zip(records, fit.outcome)]
    return records
