"""N MLPs of one shape stacked into one network (the batched model).

:class:`GroupMLP` holds every member's parameters in one flat (N, S)
buffer (:class:`FlatParams`), its BatchNorm running statistics as (N, ...)
tensors, its random streams and its optimiser, and computes the members'
losses and one optimiser step at once.  Members never mix: the summed loss
has a block-diagonal Jacobian, so each member's gradient is that of its own
mean loss.  BatchNorm keeps per-member statistics (training: batch
statistics over each member's own batch; running stats with momentum 0.1,
eps 1e-5, unbiased running variance, as PyTorch).

A member's numbers do not depend on its group: activations are laid out
(member, feature, sample) and every kernel is one of
:mod:`dnn_spring.train._member_ops`; the parameters live in one flat buffer whose
member rows (and parameters) are padded to whole vectors, so the
elementwise optimiser kernels never split a member between a vector body
and a scalar tail.  The epoch loop around it is :mod:`dnn_spring.train._group`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dnn_spring.train import _rng as rng
from dnn_spring.train._member_ops import MemberLeakyReLU, MemberLinear, member_batchnorm, member_sum
from dnn_spring.train._models import MLP, init_mlp_parameters
from dnn_spring.train._optim import GroupOptimizer

__all__ = ["GroupMembers", "GroupMLP", "FlatParams"]

_BN_MOMENTUM, _BN_EPS = 0.1, 1e-5

# Each member's row of the flat parameter buffer is padded to a multiple of
# this many floats, so an elementwise optimiser kernel over N rows never has
# a scalar tail or a thread seam inside a member (16 floats is one AVX-512
# vector; the vector loops step by two vectors).
_ROW_ALIGN = 64
# ... and each parameter starts on a 64-byte boundary, as the batched product wants.
_PARAM_ALIGN = 16


class FlatParams:
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


_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


class GroupMembers:
    """What every stacked network shares: the members' parameters in one flat
    buffer, their BatchNorm statistics, random-stream keys and optimiser; one
    training step; retiring members; the group's state for a checkpoint.

    A subclass calls :meth:`_stack` with the members' initial state dicts and
    defines ``losses(x, y)``, ``_set_members(ids)`` (per-member settings for
    the rows :attr:`row_ids`, then :meth:`_views`) and
    ``member_model(config, state)``.  With ``PHANTOM``, a lone member is
    stacked twice (see :attr:`row_ids`).
    """

    PHANTOM = False

    def _stack(self, configs: list, states: list, device: torch.device) -> None:
        self.configs, self.device = list(configs), device
        names = list(states[0])
        self.buffer_names = [k for k in names if k.rsplit(".", 1)[-1] in _BUFFERS]
        self.param_names = [k for k in names if k not in self.buffer_names]
        self.weights = FlatParams(states, self.param_names, device)
        self.buffers = {k: torch.stack([s[k] for s in states]).to(device)
                        for k in self.buffer_names}
        self.keys = rng.member_keys([c.seed for c in configs], device)
        self.ids = list(range(len(configs)))
        self._select_rows(self.ids)
        self._set_members(self.ids)
        self.opt = self.new_optimizer()

    def _rows(self, positions: list) -> list:
        return positions + positions[:1] if self.PHANTOM and len(positions) == 1 else positions

    @property
    def row_ids(self) -> list:
        """The config index of each row of the stacked tensors.

        With ``PHANTOM`` a lone member is stacked twice (a phantom copy that
        computes the same numbers and is never read), so a group of one runs
        the very operators of any other group: the same kernels, and the
        same count.
        """
        return self._rows(list(self.ids))

    def _select_rows(self, positions: list) -> None:
        """Keep the stacked rows at ``positions`` (with ``PHANTOM``, a lone one twice)."""
        rows = self._rows(positions)
        if rows == list(range(self.weights.flat.shape[0])):
            return
        index = torch.tensor(rows, device=self.device)
        self.weights.keep(index)
        self.buffers = {k: t.index_select(0, index) for k, t in self.buffers.items()}
        self.keys = {k: t.index_select(0, index) for k, t in self.keys.items()}

    def _views(self) -> None:
        """The (N, ...) parameter and gradient views of the flat buffers."""
        self.params = {k: v.requires_grad_()
                       for k, v in self.weights.views(self.weights.flat).items()}
        self.grad_flat = torch.zeros_like(self.weights.flat)
        self.grad_views = self.weights.views(self.grad_flat)

    def new_optimizer(self) -> GroupOptimizer:
        """A fresh optimiser over the active members."""
        active = [self.configs[i].train for i in self.row_ids]
        return GroupOptimizer(
            active[0].optimizer, [self.weights.flat], [t.lr for t in active],
            temperatures=[t.temperature for t in active], weight_decay=active[0].weight_decay,
            keys=self.keys["langevin"])

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One optimiser step on a batch (inputs x, labels y (N, B)); each member's mean loss (N,)."""
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

    # ----------------------------------------------------------- members
    def export(self, pos: int):
        """Member at stack position ``pos`` as its own network (:meth:`member_model`) on the device."""
        state = self.weights.member_state(pos)
        state.update({k: t[pos].clone() for k, t in self.buffers.items()})
        return self.member_model(self.configs[self.ids[pos]], state)

    def finite(self) -> Tensor:
        """Per stacked row: are all its parameters finite? (rows,) bool, on the device."""
        return torch.isfinite(self.weights.flat).all(1)

    def keep(self, positions: list) -> None:
        """Keep only the members at stack ``positions`` (the others are dropped)."""
        if not positions:
            self.ids = []
            return
        self._select_rows(positions)
        self._set_members([self.ids[i] for i in positions])
        self.opt.keep([self.weights.flat], self._rows(positions))

    # ----------------------------------------------------------- state
    def state(self) -> dict:
        """The active members' parameters, statistics and optimiser, on the CPU."""
        n = len(self.ids)
        cpu = lambda t: t[:n].detach().cpu()  # noqa: E731  (a phantom row is not saved)
        return {"ids": list(self.ids), "flat": cpu(self.weights.flat),
                "buffers": {k: cpu(t) for k, t in self.buffers.items()},
                "opt_t": self.opt.t, "opt_state": [[cpu(t) for t in g] for g in self.opt.state]}

    def load_state(self, state: dict) -> None:
        """Go on from a :meth:`state` of this same group.

        Everything is read and checked before the first change, so a state
        that does not fit raises ValueError and leaves the model as it was.
        """
        ids, dev = [int(i) for i in state["ids"]], self.device
        flat = state["flat"]
        if flat.shape != (len(ids), self.weights.flat.shape[1]) or flat.dtype != torch.float32:
            raise ValueError(f"its parameters have shape {tuple(flat.shape)}")
        buffers = {k: state["buffers"][k].to(dev) for k in self.buffers}
        opt_state = [[t.to(dev) for t in g] for g in state["opt_state"]]
        opt_t = int(state["opt_t"])
        if len(set(ids)) != len(ids) or not all(0 <= i < len(self.configs) for i in ids):
            raise ValueError(f"its member ids {ids} are not members of this group")
        if any(t.shape != flat.shape for g in opt_state for t in g):
            raise ValueError("its optimiser state does not fit its parameters")
        index = torch.tensor(ids, device=dev)
        keys = {k: t.index_select(0, index) for k, t in
                rng.member_keys([c.seed for c in self.configs], dev).items()}
        rows = self._rows(list(range(len(ids))))
        # commit
        self.weights.flat = flat.to(dev)
        self.keys = keys
        self.buffers = buffers
        self._select_rows(list(range(len(ids))))
        self._set_members(ids)
        self.opt = self.new_optimizer()
        self.opt.state = [[t[rows] for t in g] for g in opt_state]
        self.opt.set_steps(opt_t)


class GroupMLP(GroupMembers):
    """The MLPs of ``configs`` (one :func:`~dnn_spring.train._grouping.group_key`) as one network.

    Attributes
    ----------
    configs : list of RunConfig
        Every member the group started with.
    ids : list of int
        Indices into ``configs`` of the active members, in stack order.
    weights : FlatParams
        Parameters of the active members; ``params`` are their (N, ...) views.
    buffers : dict of Tensor
        BatchNorm running statistics, (N, ...) each.
    keys : dict of Tensor
        Per stream of :data:`~dnn_spring.train._rng.STREAM_NAMES`, the active
        members' keys, (N,) int64 each (their counter-based random streams).
    opt : GroupOptimizer
        Over the flat buffer, one learning rate per active member.
    """

    PHANTOM = True

    def __init__(self, configs: list, n_in: int, n_out: int, device: torch.device):
        self.n_in, self.n_out = int(n_in), int(n_out)
        c0 = configs[0]
        self.hidden, self.bn = c0.model.depth - 1, c0.model.batchnorm
        states = [init_mlp_parameters(c.model, self.n_in, self.n_out,
                                      generator=rng.init_generator(c.seed))
                  for c in configs]
        self._stack(configs, states, device)

    def _set_members(self, ids: list) -> None:
        """Per-member settings and the parameter views for the members ``ids``."""
        self.ids = ids
        cfg = [self.configs[i] for i in self.row_ids]
        self.slope = torch.tensor([c.model.slope for c in cfg], device=self.device)
        self.dropout = [c.model.dropout for c in cfg]
        self.dropout_t = torch.tensor(self.dropout, device=self.device)
        self.noise = [c.train.noise for c in cfg]
        self._views()

    # ----------------------------------------------------------- forward
    def _batchnorm(self, x: Tensor, name: str) -> Tensor:
        """Training-mode BatchNorm over each member's batch, x (N, F, B)."""
        self.buffers[f"{name}.num_batches_tracked"].add_(1)
        return member_batchnorm(x, self.params[f"{name}.weight"], self.params[f"{name}.bias"],
                                self.buffers[f"{name}.running_mean"],
                                self.buffers[f"{name}.running_var"],
                                momentum=_BN_MOMENTUM, eps=_BN_EPS)

    def dropout_masks(self, batch: int) -> "Tensor | None":
        """Per-member dropout multipliers of shape (L-1, N, width, B), or None.

        The masks of optimiser step t (0-based) are member k's ``dropout``
        stream at counter t, its entries in (layer, feature, sample) order
        (:func:`~dnn_spring.train._rng.keep_mask`); a member with p = 0 keeps
        everything.  A fixed number of tensor operations for any N.
        """
        if not any(self.dropout):
            return None
        width = self.weights.shapes["blocks.0.linear.weight"][0]
        keep, scale = rng.keep_mask(self.keys["dropout"], self.opt.counter,
                                        self.hidden * width * batch, self.dropout_t)
        mult = keep.view(-1, self.hidden, width, batch) * scale.view(-1, 1, 1, 1)
        return mult.transpose(0, 1)

    def losses(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-sample cross-entropy (N, B) for inputs x (N, n_in, B) and labels y (N, B)."""
        p, drop = self.params, self.dropout_masks(x.shape[2])
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

    def member_model(self, config, state: dict) -> MLP:
        """An :class:`~dnn_spring.train._models.MLP` of ``config`` holding ``state`` (its device)."""
        return MLP(config.model, self.n_in, self.n_out, state=state)
