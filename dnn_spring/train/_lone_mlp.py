"""One MLP trained alone at plain-loop speed (the default of ``train_run``).

A group's kernels (:mod:`dnn_spring.train._member_ops`) keep a member's numbers
the same in any group, at a price: a lone run stacked as a group would carry a
phantom copy, padded batched products, BatchNorm over a (1, N·F, B) view and
custom autograd functions, about twice the time of a plain PyTorch loop.
:class:`LoneMLP` is the same network trained by the plain kernels instead:
activations laid out (samples, features), ``F.linear`` (one GEMM), the native
``batch_norm``, ``leaky_relu`` and ``cross_entropy``, and the gradients copied
in one ``_foreach_copy_`` into the flat buffer that the group's optimiser
(:class:`~dnn_spring.train._optim.GroupOptimizer`, one fused Adam pass) steps.

Everything that is not a kernel is the group's: the same initial parameters,
seed streams, epoch order, data and label noise, dropout masks (the same
random numbers, read in (feature, sample) order), Langevin noise, stopping
and divergence rules, evaluation and record.  What differs is rounding: a
float32 GEMM or BatchNorm sums in another order than the batched ones, so a
record of the lone path and the record of the same config in a sweep group
agree to float32 rounding, not bit for bit (after many epochs, a few
samples of accuracy).  ``train_run(config, grouped=True)`` trains a lone run
through the group's kernels when those bits are wanted.  The lone path is as
deterministic as the group's: the same config gives the same record on a
given machine and thread count, and in the reproducible mode
(:mod:`dnn_spring.train._reproducible`) on every x86-64 CPU with AVX2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dnn_spring.train._group_mlp import _BN_EPS, _BN_MOMENTUM, GroupMLP

__all__ = ["LoneMLP"]


class LoneMLP(GroupMLP):
    """The MLP of one config, trained with the plain (samples, features) kernels.

    The interface of :class:`~dnn_spring.train._group_mlp.GroupMLP` for a group
    of one, without the phantom copy; its inputs are (1, B, n_in)
    (:attr:`SAMPLES_FIRST`), as the epoch loop of :mod:`dnn_spring.train._group`
    hands them.
    """

    PHANTOM = False
    #: The epoch loop lays a batch out (member, sample, feature) for this model.
    SAMPLES_FIRST = True

    def __init__(self, configs: list, n_in: int, n_out: int, device: torch.device):
        if len(configs) != 1:
            raise ValueError(f"a LoneMLP trains one config, got {len(configs)}")
        super().__init__(configs, n_in, n_out, device)

    def _set_members(self, ids: list) -> None:
        super()._set_members(ids)
        self.alpha = float(self.configs[ids[0]].model.slope) if ids else 0.0

    def _views(self) -> None:
        """Each parameter (and its gradient) as a view of row 0 of the flat buffers,
        in the shapes of ``MLP.state_dict()``."""
        self.grad_flat = torch.zeros_like(self.weights.flat)
        row, grad_row = self.weights.flat[0], self.grad_flat[0]
        self.params, grads = {}, {}
        for k, o in self.weights.offsets.items():
            shape = self.weights.natural[k]
            size = torch.Size(shape).numel()
            self.params[k] = row[o:o + size].view(shape).requires_grad_()
            grads[k] = grad_row[o:o + size].view(shape)
        self._leaves = [self.params[k] for k in self.param_names]
        self._grad_leaves = [grads[k] for k in self.param_names]

    def _batchnorm(self, x: Tensor, name: str) -> Tensor:
        """Training-mode BatchNorm of x (B, F), PyTorch's running-statistics rule."""
        self.buffers[f"{name}.num_batches_tracked"].add_(1)
        return F.batch_norm(x, self.buffers[f"{name}.running_mean"][0],
                            self.buffers[f"{name}.running_var"][0], self.params[f"{name}.weight"],
                            self.params[f"{name}.bias"], True, _BN_MOMENTUM, _BN_EPS)

    def logits(self, x: Tensor) -> Tensor:
        """Training-mode logits (B, n_out) of inputs x (B, n_in)."""
        p, drop = self.params, self.dropout_masks(x.shape[0])
        if self.bn:
            x = self._batchnorm(x, "input_bn")
        for i in range(self.hidden):
            x = F.linear(x, p[f"blocks.{i}.linear.weight"], p[f"blocks.{i}.linear.bias"])
            if self.bn:
                x = self._batchnorm(x, f"blocks.{i}.bn")
            x = F.leaky_relu(x, self.alpha, inplace=True)  # its input is not kept for a backward
            if drop is not None:
                x = x * drop[i, 0].t()  # the group's mask entries, (sample, feature)
        return F.linear(x, p["head.weight"], p["head.bias"])

    def losses(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-sample cross-entropy (1, B) for inputs x (1, B, n_in) and labels y (1, B)."""
        return F.cross_entropy(self.logits(x[0]), y[0], reduction="none").view(y.shape)

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One optimiser step on a batch x (1, B, n_in), y (1, B); the mean loss (1,)."""
        loss = F.cross_entropy(self.logits(x[0]), y[0])
        grads = torch.autograd.grad(loss, self._leaves)
        torch._foreach_copy_(self._grad_leaves, grads)
        self.opt.step([self.grad_flat])
        return loss.detach().view(1)
