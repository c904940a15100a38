"""Batched training: N small MLPs trained at once as one network.

A row of the phase diagram (one noise level, six slopes, ten seeds) is 60
networks of the same shape.  Trained one at a time with small batches, most of
the time goes to Python and kernel-launch overhead; stacking them turns every
``Linear`` into one batched product on parameters of shape (N, out, in) and
every optimiser update into one fused pass over a flat (N, S) buffer.

Members share the architecture, the data set and the batch size
(:func:`group_key`); each has its own seed (initialisation, data order, noise
draws, dropout masks, Langevin noise), LeakyReLU slope α (a tensor of shape (N,)),
dropout p, learning rate, data/label-noise level, init scheme/scale and SGLD
temperature.  BatchNorm keeps per-member statistics (training: batch
statistics over each member's own batch; running stats with momentum 0.1,
eps 1e-5, unbiased running variance, as PyTorch).  Members never mix: the
summed loss has a block-diagonal Jacobian, so each member's gradient is that
of its own mean loss.

A member that stops early or diverges is *retired* at the end of that epoch:
its parameters are copied out and it is dropped from the stacked tensors, so
the others go on untouched (and faster).  Divergence is read from the
epoch's mean loss; a NaN in one member cannot reach another.

The single MLP run of :func:`dnn_spring.train.train_run` is a group of one,
and a member's numbers do not depend on its group: the same config gives the
same record bit for bit alone or in any group, at any position (on a given
machine and thread count).  How each kernel is made so is in
:mod:`dnn_spring._member_ops`: activations laid out (member, feature,
sample), aligned batched products, BatchNorm channel by channel (running
stats with exactly PyTorch's rule), sums over contiguous rows; and here the
parameters live in one flat buffer whose member rows (and parameters) are
padded to whole vectors, so the elementwise optimiser kernels never split a
member between a vector body and a scalar tail.  (``torch.func.vmap`` was
measured slower than batched products in 0.1.0: 34 vs 29 ms per step at
batch 10.)

On a CPU batching pays off at small batches (Python and dispatch overhead is
shared by N members); at full batch a single run already keeps the core busy,
and more than a few members of 2560 samples spill the caches, so
:func:`max_group_size` caps groups on the CPU by activation size.
"""

from __future__ import annotations

import logging
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from ._member_ops import (MemberLeakyReLU, MemberLinear, dropout_keep, member_batchnorm,
                          member_sum)
from .config import RunConfig
from .records import write_atomically
from .train import (DIVERGENCE_FACTOR, BatchedOptimizer, add_data_noise, curve_log_d,
                    epoch_order, fail_record, finish_or_fail, member_seeds, new_record,
                    resolve_device, stop_reason)

__all__ = ["train_group", "group_key", "max_group_size", "MEMBER_FIELDS"]

logger = logging.getLogger("dnn_spring.batched")

#: Flat config fields that may differ between members of one batched group.
MEMBER_FIELDS = frozenset({"seed", "slope", "dropout", "lr", "noise", "init", "init_scale",
                           "zero_bias", "temperature"})
_BN_MOMENTUM, _BN_EPS = 0.1, 1e-5
_MAX_MEMBERS = 512
# On a CPU a group pays once one layer's activations outgrow the caches.  Measured
# (2 threads, width 100, noise 0.2, ms per member for whole fits, groups of
# 1/2/3/4/6/8): full batch, 5 epochs: 123/114/121/104/109/101; batch 640, 2
# epochs, groups of 2/4/8/16: 64/53/44/53.  4 MiB per layer gives 4 members at
# full batch, 16 at 640, 64 at 160 and 512 (the cap) at 10.
_CPU_LAYER_BYTES = 2**22


def group_key(config: RunConfig) -> tuple:
    """Configs with equal keys can be trained together by :func:`train_group`.

    An MLP's key holds every flat field except :data:`MEMBER_FIELDS`; a CNN's
    key is unique to the config (CNN runs are trained one at a time).
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"`config` must be a RunConfig, got {type(config).__name__}")
    if config.model.arch != "mlp":
        return ("single", config.key())
    return ("mlp",) + tuple(sorted((k, v) for k, v in config.flat().items()
                                   if k not in MEMBER_FIELDS))


def _shape_estimate(config: RunConfig) -> tuple:
    """(n_train, n_in) without loading the data (upper estimates)."""
    d = config.data
    if d.dataset == "digits":
        return (d.n_train or 1437), 64
    if d.dataset in ("gaussian", "random"):
        return (d.n_train or 2560), 100
    channels = 3 if d.dataset == "cifar10" else 1
    return (d.n_train or 2560), channels * d.image_size**2


def _memory_budget(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        avail = 4 * 2**30
    return int(min(avail * 0.25, 4 * 2**30))


def max_group_size(config: RunConfig, *, device="cpu") -> int:
    """Largest number of members of ``config``'s group to train at once.

    Bytes per member (float32): parameters with gradient and optimiser state
    (5·P), the activations kept for backward (≈ 8 tensors of batch × width per
    hidden layer, plus the input), and one epoch of noisy, reordered inputs
    (n_train × n_in).  The budget is half the free GPU memory, or a quarter
    of the available RAM (at most 4 GiB) on the CPU; capped at 512 members.
    CNN configs always get 1.
    """
    if config.model.arch != "mlp":
        return 1
    dev = resolve_device(device)
    m, (n, n_in) = config.model, _shape_estimate(config)
    n_out = 10
    n_params = n_in * m.width + (m.depth - 2) * m.width**2 + m.width * n_out + 6 * m.depth * m.width
    b = n if config.train.batch_size == 0 else min(config.train.batch_size, n)
    act = 8 * b * m.width * (m.depth - 1) + 4 * b * n_in + 4 * b * n_out
    per_member = 4 * (5 * n_params + act + n * n_in) + 16 * n
    size = min(_MAX_MEMBERS, _memory_budget(dev) // per_member)
    if dev.type == "cpu":
        size = min(size, _CPU_LAYER_BYTES // (4 * b * max(m.width, n_in)))
    return int(max(1, size))


# Each member's row of the flat parameter buffer is padded to a multiple of
# this many floats, so an elementwise optimiser kernel over N rows never has
# a scalar tail or a thread seam inside a member (16 floats is one AVX-512
# vector; the vector loops step by two vectors).
_ROW_ALIGN = 64
# ... and each parameter starts on a 64-byte boundary, as the batched product wants.
_PARAM_ALIGN = 16
_CHECKPOINT_FORMAT = 2


class _FlatParams:
    """Every member's parameters as one row of a flat (N, S) buffer.

    ``views`` gives each parameter as a (N, ...) view of the buffer:
    Linear weights (N, out, in), Linear biases (N, out, 1), BatchNorm
    weights and biases (N, F).  Rows are padded to :data:`_ROW_ALIGN`.
    """

    def __init__(self, states: list, names: list, device):
        self.names = list(names)
        self.shapes, self.natural, self.offsets, offset = {}, {}, {}, 0
        for k in self.names:
            t = states[0][k]
            column = k.endswith("linear.bias") or k == "head.bias"  # (out, 1): broadcasts over B
            self.natural[k] = tuple(t.shape)
            self.shapes[k], self.offsets[k] = tuple(t.shape) + ((1,) if column else ()), offset
            offset += -(-t.numel() // _PARAM_ALIGN) * _PARAM_ALIGN  # see member_bmm
        width = -(-offset // _ROW_ALIGN) * _ROW_ALIGN
        self.flat = torch.zeros(len(states), width, device=device)
        for view, k in zip(self.views(self.flat).values(), self.names):
            view.copy_(torch.stack([state[k].reshape(view.shape[1:]) for state in states]))

    def views(self, flat: Tensor) -> dict:
        """Each parameter as a (N, ...) view with member stride S, also when N is 1."""
        out = {}
        for k, o in self.offsets.items():
            shape = self.shapes[k]
            inner = [math.prod(shape[i + 1:]) for i in range(len(shape))]
            out[k] = flat.as_strided((flat.shape[0], *shape), (flat.stride(0), *inner),
                                     flat.storage_offset() + o)
        return out

    def member_state(self, pos: int) -> dict:
        """Member ``pos``'s parameters in ``MLP.state_dict()`` shapes (copies)."""
        row = self.flat[pos].detach()
        return {k: row[o:o + math.prod(self.natural[k])].clone().view(self.natural[k])
                for k, o in self.offsets.items()}

    def keep(self, index: Tensor) -> None:
        self.flat = self.flat.index_select(0, index)


class _Ensemble:
    """Stacked parameters of N MLPs and their training loop."""

    def __init__(self, configs: list, data, device: torch.device):
        from .models import init_mlp_parameters

        self.configs, self.data, self.device = configs, data, device
        self.n_in, self.n_out = int(data.x_train.shape[1]), int(data.n_classes)
        c0 = configs[0]
        self.hidden, self.bn = c0.model.depth - 1, c0.model.batchnorm
        seeds = [member_seeds(c.seed) for c in configs]
        states = [init_mlp_parameters(c.model, self.n_in, self.n_out,
                                      generator=torch.Generator().manual_seed(s["init"]))
                  for c, s in zip(configs, seeds)]
        names = list(states[0])
        self.buffer_names = [k for k in names if k.rsplit(".", 1)[-1] in
                             ("running_mean", "running_var", "num_batches_tracked")]
        self.param_names = [k for k in names if k not in self.buffer_names]
        self.weights = _FlatParams(states, self.param_names, device)
        self.buffers = {k: torch.stack([s[k] for s in states]).to(device)
                        for k in self.buffer_names}
        self.gens = [{k: torch.Generator(device=device).manual_seed(v)
                      for k, v in s.items() if k != "init"} for s in seeds]
        self._set_members(list(range(len(configs))))
        self.opt = self._optimizer()
        self.outcome = [{} for _ in configs]  # per original member: status, state, ...

    def _set_members(self, ids: list) -> None:
        """Per-member settings and the parameter views for the members ``ids``."""
        self.ids = ids
        cfg = [self.configs[i] for i in ids]
        self.slope = torch.tensor([c.model.slope for c in cfg], device=self.device)
        self.dropout = [c.model.dropout for c in cfg]
        self.noise = [c.train.noise for c in cfg]
        self.params = {k: v.requires_grad_()
                       for k, v in self.weights.views(self.weights.flat).items()}
        self.grad_flat = torch.zeros_like(self.weights.flat)
        self.grad_views = self.weights.views(self.grad_flat)
        self._inputs = None

    def _optimizer(self) -> BatchedOptimizer:
        """A fresh optimiser over the active members."""
        active = [self.configs[i].train for i in self.ids]
        return BatchedOptimizer(
            active[0].optimizer, [self.weights.flat], [t.lr for t in active],
            temperatures=[t.temperature for t in active], weight_decay=active[0].weight_decay,
            generators=[g["langevin"] for g in self.gens])

    # ----------------------------------------------------------- forward
    def _batchnorm(self, x: Tensor, name: str) -> Tensor:
        """Training-mode BatchNorm over each member's batch, x (N, F, B)."""
        self.buffers[f"{name}.num_batches_tracked"].add_(1)
        return member_batchnorm(x, self.params[f"{name}.weight"], self.params[f"{name}.bias"],
                                self.buffers[f"{name}.running_mean"],
                                self.buffers[f"{name}.running_var"],
                                momentum=_BN_MOMENTUM, eps=_BN_EPS)

    def _dropout_masks(self, batch: int) -> "Tensor | None":
        """Per-member dropout multipliers of shape (L-1, N, width, B), or None."""
        if not any(self.dropout):
            return None
        width = self.weights.shapes["blocks.0.linear.weight"][0]
        shape = (self.hidden, len(self.ids), width, batch)
        mult = (torch.empty(shape, device=self.device) if all(self.dropout)
                else torch.ones(shape, device=self.device))
        for pos, p in enumerate(self.dropout):
            if p > 0:
                keep, scale = dropout_keep((self.hidden, batch, width), p,
                                            self.gens[pos]["dropout"])
                torch.mul(keep.to(self.device).transpose(1, 2), scale, out=mult[:, pos])
        return mult

    def losses(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-sample cross-entropy (N, B) for inputs x (N, n_in, B) and labels y (N, B)."""
        p, drop = self.params, self._dropout_masks(x.shape[2])
        if self.bn:
            x = self._batchnorm(x, "input_bn")
        for i in range(self.hidden):
            x = MemberLinear.apply(x, p[f"blocks.{i}.linear.weight"], p[f"blocks.{i}.linear.bias"])
            if self.bn:
                x = self._batchnorm(x, f"blocks.{i}.bn")
            x = MemberLeakyReLU.apply(x, self.slope)
            if drop is not None:
                x = x * drop[i]
        logits = MemberLinear.apply(x, p["head.weight"], p["head.bias"])
        rows = logits.transpose(1, 2).reshape(-1, self.n_out)
        return F.cross_entropy(rows, y.reshape(-1), reduction="none").view(y.shape)

    # ----------------------------------------------------------- data
    def _epoch_data(self, batch_size: int, x_std: float) -> tuple:
        """Each member's reordered, noisy training set: inputs (N, n_in, n), labels (N, n)."""
        X, Y, N = self.data.x_train, self.data.y_train, len(self.ids)
        full = batch_size == 0 or batch_size >= len(X)
        if full and not any(self.noise):
            if self._inputs is None:
                self._inputs = (X.T.unsqueeze(0).repeat(N, 1, 1), Y.unsqueeze(0).repeat(N, 1))
            return self._inputs
        xs, ys = [], []
        for pos in range(N):
            g = self.gens[pos]
            order = epoch_order(len(X), batch_size, g["order"], X.device)
            x, y = (X, Y) if order is None else (X[order], Y[order])
            x, y = add_data_noise(x, y, self.noise[pos], x_std=x_std,
                                  n_classes=self.n_out, generator=g["noise"])
            xs.append(x.T)
            ys.append(y)
        return torch.stack(xs), torch.stack(ys)

    # ----------------------------------------------------------- members
    def export(self, pos: int):
        """Member at position ``pos`` as a :class:`~dnn_spring.models.MLP` on the device."""
        from .models import MLP

        state = self.weights.member_state(pos)
        state.update({k: t[pos].clone() for k, t in self.buffers.items()})
        return MLP(self.configs[self.ids[pos]].model, self.n_in, self.n_out, state=state)

    def finite(self) -> list:
        """Per active member: are all its parameters finite?"""
        return torch.isfinite(self.weights.flat).all(1).tolist()

    def retire(self, reasons: dict) -> None:
        """Copy out the members ``{pos: stop_reason}`` and drop them from the stack."""
        for pos, reason in reasons.items():
            out = self.outcome[self.ids[pos]]
            out["stop_reason"] = reason
            out["model"] = self.export(pos) if reason != "diverged" else None
        keep = [pos for pos in range(len(self.ids)) if pos not in reasons]
        if not keep:
            self.ids = []
            return
        index = torch.tensor(keep, device=self.device)
        self.weights.keep(index)
        self.buffers = {k: t.index_select(0, index) for k, t in self.buffers.items()}
        self.gens = [self.gens[i] for i in keep]
        self._set_members([self.ids[i] for i in keep])
        self.opt.keep([self.weights.flat], keep)

    def _trajectory(self, epoch: int) -> None:
        for pos, i in enumerate(self.ids):
            log_d = curve_log_d(self.export(pos), self.data)
            self.outcome[i].setdefault("trajectory", []).append({"epoch": epoch, "log_d": log_d})

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One optimiser step on a batch x (N, n_in, B), y (N, B); each member's mean loss (N,)."""
        losses = self.losses(x, y)
        batch = y.shape[1]
        names = self.param_names
        grads = torch.autograd.grad(losses, [self.params[k] for k in names],
                                    grad_outputs=torch.full_like(losses, 1.0 / batch))
        for k, g in zip(names, grads):
            self.grad_views[k].copy_(g)
        self.opt.step([self.grad_flat])
        losses = losses.detach()
        return (member_sum(losses.unsqueeze(1)) / batch).view(-1)

    def _epoch(self, batch_size: int, x_std: float) -> list:
        xe, ye = self._epoch_data(batch_size, x_std)
        n = xe.shape[2]
        step = n if batch_size == 0 or batch_size >= n else batch_size
        total = torch.zeros(len(self.ids), device=self.device)
        seen = 0
        for s in range(0, n, step):
            if self.bn and n - s == 1:
                break  # BatchNorm cannot train on a last batch of one sample; skip it
            xb, yb = xe[:, :, s:s + step].contiguous(), ye[:, s:s + step]
            losses = self.step(xb, yb)
            total += losses * yb.shape[1]
            seen += yb.shape[1]
        return (total / seen).tolist()

    # ----------------------------------------------------------- checkpoints
    def state(self, epoch: int, previous: list, above: list) -> dict:
        """Everything needed to go on after ``epoch``, as CPU tensors and plain values."""
        cpu = lambda t: t.detach().cpu()  # noqa: E731
        outcome = [{k: ({n: cpu(t) for n, t in v.state_dict().items()}
                        if k == "model" and v is not None else v) for k, v in out.items()}
                   for out in self.outcome]
        return {"format": _CHECKPOINT_FORMAT, "keys": [c.key() for c in self.configs],
                "epoch": epoch, "ids": list(self.ids), "previous": list(previous),
                "above": list(above), "outcome": outcome, "flat": cpu(self.weights.flat),
                "buffers": {k: cpu(t) for k, t in self.buffers.items()},
                "generators": [{k: g.get_state() for k, g in gens.items()} for gens in self.gens],
                "opt_t": self.opt.t, "opt_state": [[cpu(t) for t in g] for g in self.opt.state]}

    def load(self, state: dict) -> tuple:
        """Go on from a :meth:`state` of this same group; returns (epoch, previous, above).

        Everything is read and checked before the first change, so a state
        that does not fit raises and leaves the ensemble as it was.
        """
        from .models import MLP

        if state.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"it has format {state.get('format')!r}, not {_CHECKPOINT_FORMAT}")
        if state["keys"] != [c.key() for c in self.configs]:
            raise ValueError("it belongs to another group of configs")
        ids, dev = [int(i) for i in state["ids"]], self.device
        flat = state["flat"]
        if flat.shape != (len(ids), self.weights.flat.shape[1]) or flat.dtype != torch.float32:
            raise ValueError(f"its parameters have shape {tuple(flat.shape)}")
        gens = [self.gens[i] for i in ids]
        saved_gens = [{k: saved[k] for k in member} for member, saved
                      in zip(gens, state["generators"], strict=True)]
        for member, saved in zip(gens, saved_gens):
            for k, g in member.items():
                if saved[k].dtype != torch.uint8 or saved[k].shape != g.get_state().shape:
                    raise ValueError(f"the {k} generator state does not fit")
        buffers = {k: state["buffers"][k].to(dev) for k in self.buffers}
        opt_state = [[t.to(dev) for t in g] for g in state["opt_state"]]
        outcome = [{**out, "model": MLP(c.model, self.n_in, self.n_out, state=out["model"]).to(dev)}
                   if out.get("model") is not None else out
                   for c, out in zip(self.configs, state["outcome"], strict=True)]
        epoch, previous, opt_t = int(state["epoch"]), list(state["previous"]), int(state["opt_t"])
        above = [int(a) for a in state["above"]]
        # commit
        for member, saved in zip(gens, saved_gens):
            for k, g in member.items():
                g.set_state(saved[k])
        self.weights.flat = flat.to(dev)
        self.gens, self.buffers, self.outcome = gens, buffers, outcome
        self._set_members(ids)
        self.opt = self._optimizer()
        self.opt.t, self.opt.state = opt_t, opt_state
        return epoch, previous, above

    def _resume(self, path) -> "tuple | None":
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            return self.load(state)
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - a bad checkpoint costs time, never the runs
            text = (str(exc).strip().splitlines() or [""])[0]
            logger.warning("ignoring checkpoint %s (%s: %s); training the group from the start",
                           path, type(exc).__name__, text)
            return None

    def fit(self, progress: bool = False, checkpoint=None, checkpoint_every: float = 300.0) -> None:
        """Train until every member has stopped; fills ``self.outcome``.

        With ``checkpoint`` (a file path), go on from the state saved there if
        it belongs to this group, and save the state there at the end of an
        epoch once ``checkpoint_every`` seconds have passed since the last save.
        """
        from tqdm.auto import tqdm

        train = self.configs[0].train
        x_std = float(self.data.x_train.std())
        chance = math.log(self.n_out)
        start, previous, above = 0, [None] * len(self.ids), [0] * len(self.ids)
        resumed = self._resume(checkpoint) if checkpoint is not None else None
        if resumed is not None:
            start, previous, above = resumed
        elif train.curve_every:
            self._trajectory(0)
        last_save = time.monotonic()
        bar = tqdm(range(start + 1, train.epochs + 1), disable=not progress, desc="epochs",
                   leave=False)
        for epoch in bar:
            means = self._epoch(train.batch_size, x_std)
            finite = self.finite()
            stops = {}
            for pos, (i, mean) in enumerate(zip(self.ids, means)):
                self.outcome[i].update(epochs_run=epoch, train_loss=mean)
                above[pos] = above[pos] + 1 if mean > DIVERGENCE_FACTOR * chance else 0
                reason = stop_reason(mean, previous[pos], train, finite=finite[pos],
                                     epochs_above=above[pos], last=epoch == train.epochs)
                if reason:
                    stops[pos] = reason
            if train.curve_every and epoch % train.curve_every == 0:
                self._trajectory(epoch)
            bar.set_postfix(active=len(self.ids), loss=f"{sum(means) / len(means):.4g}")
            previous = [m for pos, m in enumerate(means) if pos not in stops]
            above = [a for pos, a in enumerate(above) if pos not in stops]
            if stops:
                self.retire(stops)
            if not self.ids:
                break
            if checkpoint is not None and time.monotonic() - last_save >= checkpoint_every:
                state = self.state(epoch, previous, above)
                write_atomically(checkpoint, lambda handle: torch.save(state, handle))
                last_save = time.monotonic()
        if self.ids:
            self.retire({pos: "epochs" for pos in range(len(self.ids))})
        bar.close()


def _check_group(configs) -> list:
    configs = list(configs)
    if not configs:
        raise ValueError("`configs` must hold at least one RunConfig, got an empty list")
    for c in configs:
        if not isinstance(c, RunConfig):
            raise TypeError(f"`configs` must hold RunConfig objects, got {type(c).__name__}")
    if configs[0].model.arch != "mlp" and len(configs) > 1:
        raise ValueError("`configs` of arch 'cnn' must be trained one at a time (group of 1)")
    if configs[0].model.batchnorm and configs[0].train.batch_size == 1:
        raise ValueError("`batch_size` must be >= 2 (or 0) with BatchNorm, got 1; "
                         "BatchNorm cannot train on one sample (or pass batchnorm=False)")
    first = group_key(configs[0])
    for c in configs[1:]:
        if group_key(c) != first:
            diff = sorted(k for k, v in c.flat().items()
                          if k not in MEMBER_FIELDS and configs[0].flat()[k] != v)
            raise ValueError(f"`configs` cannot share one batched model: they differ in {diff}; "
                             "group them by dnn_spring.batched.group_key first")
    return configs


def train_group(configs: list, *, device="cpu", progress: bool = False, checkpoint=None,
                checkpoint_every: float = 300.0) -> list:
    """Train compatible configs as one batched model; one run record each.

    Parameters
    ----------
    configs : list of RunConfig
        Members with equal :func:`group_key` (they may differ in
        :data:`MEMBER_FIELDS`).  A CNN config must come alone.
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

    Returns
    -------
    list of dict
        Run records in the order of ``configs``, in the format of
        :func:`dnn_spring.train.train_run`.  ``wall_time`` is the member's
        share of the group's training time plus its own evaluation time.
    """
    configs = _check_group(configs)
    dev = resolve_device(device)
    if configs[0].model.arch != "mlp":
        from .train import train_run

        return [train_run(configs[0], device=dev, progress=progress)]
    start = time.perf_counter()
    records = [new_record(c, dev) for c in configs]
    try:
        from .data import load_dataset

        data = load_dataset(configs[0].data, device=dev, flatten=True)
        ensemble = _Ensemble(configs, data, dev)
        ensemble.fit(progress, checkpoint, checkpoint_every)
    except Exception as exc:  # noqa: BLE001 - a run never kills its caller
        share = (time.perf_counter() - start) / len(configs)
        for record in records:
            fail_record(record, exc)["wall_time"] = share
        return records
    share = (time.perf_counter() - start) / len(configs)
    for record, out, config in zip(records, ensemble.outcome, configs):
        t0 = time.perf_counter()
        record.update(stop_reason=out["stop_reason"], epochs_run=out["epochs_run"],
                      trajectory=out.get("trajectory", []))
        loss = out["train_loss"]
        record["train_loss"] = loss if loss == loss and abs(loss) != float("inf") else None
        if out["stop_reason"] == "diverged":
            record["status"] = "diverged"
        else:
            finish_or_fail(record, out["model"], data, hessian=config.train.hessian)
        record["wall_time"] = share + time.perf_counter() - t0
    return records
