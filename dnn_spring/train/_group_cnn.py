"""N CNNs of one shape stacked into one network (the batched CNN).

:class:`GroupCNN` is to :class:`~dnn_spring.train._models.CNN` what
:class:`~dnn_spring.train._group_mlp.GroupMLP` is to the MLP: every member's
parameters in one flat (N, S) buffer (:class:`~dnn_spring.train._group_mlp.FlatParams`),
its BatchNorm running statistics as (N, ...) tensors, its random streams and
its optimiser, and one step for all members.  The epoch loop around it is
:class:`~dnn_spring.train._group.GroupLoop`, as for the MLP, and a single CNN run
is a group of one.

**Layout.**  Activations are (B, N·C, H, W): each sample holds every
member's channels, member k's in channels k·C .. k·C + C - 1.  Then

* a convolution is one grouped convolution, ``groups=N`` (member k's
  weights see only its own channels); with N = 1 it is the plain
  convolution of :class:`~dnn_spring.train._models.CNN`;
* BatchNorm2d, MaxPool2d and the nearest Upsample work channel by channel,
  so the native kernels on N·C channels are each member's own (BatchNorm
  gets per-member weights, biases and running statistics as (N·C,) views);
* the LeakyReLU takes each member's slope per channel
  (:class:`ChannelLeakyReLU`; the native one when all members share it:
  both compute x or α·x and g or α·g exactly, so the numbers are the same);
* the head is the MLP's per-member product
  (:class:`~dnn_spring.train._member_ops.MemberLinear`) on (N, C·H·W, B), each
  member's features flattened in (C, H, W) order as ``CNN`` does (a lone
  member: ``F.linear``, as ``CNN``; ``member_bmm`` would compute it twice).

``torch.func.vmap`` over ``functional_call`` compiles a convolution with
batched weights into the same grouped convolution, plus its own overhead
(``benchmarks/bench_cnn.py`` measures both).

**Dropout** multiplies by masks from the members' ``dropout`` streams
(:func:`~dnn_spring.train._rng.keep_mask`): at optimiser step t (0-based, the
steps taken before it, ``opt.counter``) member k draws one mask of
(L - 1)·B·C·H·W entries, in the order (dropout layer, sample, channel, row,
column), i.e. each layer's (B, C, H, W) activation in turn.  A member's
masks do not depend on its group.  ``CNN``'s own ``nn.Dropout`` serves only
for inference (eval mode, where it does nothing).

**Members and single runs.**  A member's numbers are those of its single
run up to float32 rounding, not bit for bit: a single run (N = 1) takes the
plain convolution and an ``F.linear`` head, a group the grouped convolution
(another oneDNN kernel, which rounds differently) and ``MemberLinear``.  The rest is the same in
any group: the random streams, BatchNorm, activation, pooling and dropout
channel by channel, and the member's row of the padded optimiser buffer.
Under Adam the difference grows in the convolution biases, whose gradient
is zero but for rounding (BatchNorm follows), so Adam turns rounding into
steps of the learning rate's size; their BatchNorm running means follow.
Computing a lone member as a group of two (the MLP's phantom copy) would
give the group's kernels at twice the cost on the CPU, where CNNs train
alone, and was not bit-exact either: the grouped kernel rounded one case
differently in groups of 2 and 3 (2 threads, batch 7, 3 input channels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dnn_spring.train import _rng as rng
from dnn_spring.train._member_ops import MemberLinear
from dnn_spring.train._models import CNN, init_cnn_parameters
from dnn_spring.train._group_mlp import GroupMembers

__all__ = ["GroupCNN", "ChannelLeakyReLU", "grouped_conv3x3"]

_BN_MOMENTUM, _BN_EPS = 0.1, 1e-5


class ChannelLeakyReLU(torch.autograd.Function):
    """LeakyReLU with slope ``slope[c]`` (in [0, 1]) for channel c of x (B, C, H, W).

    Forward: the native ``prelu`` (one multiply and one select per entry).
    Backward: ``p + (g - p)·α`` with ``p = g·[out > 0]`` (for α >= 0 the
    output is positive exactly where x is), as
    :class:`~dnn_spring.train._member_ops.MemberLeakyReLU`, without the slope's
    gradient that ``prelu`` would compute.  The slope multiplies rows of
    (B·C, H·W), one value per row: broadcast as (1, C, 1, 1) the same
    product took ten times longer (measured, 2560 x 20 x 10 x 10).
    """

    @staticmethod
    def forward(ctx, x, slope):
        out = F.prelu(x, slope)
        ctx.save_for_backward(out, slope)
        return out

    @staticmethod
    def backward(ctx, grad):
        out, slope = ctx.saved_tensors
        grad = grad.contiguous()
        positive = torch.ops.aten.threshold_backward(grad, out, 0.0)
        rows = slope.repeat(grad.shape[0]).view(-1, 1)  # (B·C, 1)
        negative = (grad - positive).view(rows.shape[0], -1) * rows
        return positive + negative.view(grad.shape), None


def _channels(t: Tensor) -> Tensor:
    """A per-member parameter (N, C, ...) as a contiguous (N·C, ...) copy.

    Always a copy, also for N = 1 where a view would do, so a step runs the
    same operators whatever N (the copies are parameter-sized, i.e. tiny).
    """
    return t.clone(memory_format=torch.contiguous_format).view(-1, *t.shape[2:])


def grouped_conv3x3(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Every member's 3x3 convolution (padding 1) at once.

    x (B, N·C_in, H, W); weight (N, C_out, C_in, 3, 3); bias (N, C_out)
    → (B, N·C_out, H, W).  One grouped convolution with ``groups=N``.
    """
    return F.conv2d(x, _channels(weight), _channels(bias), padding=1, groups=weight.shape[0])


class GroupCNN(GroupMembers):
    """The CNNs of ``configs`` (one :func:`~dnn_spring.train._grouping.group_key`) as one network.

    Attributes
    ----------
    configs : list of RunConfig
        Every member the group started with.
    ids : list of int
        Indices into ``configs`` of the active members, in stack order.
    input_shape : tuple of int
        (C, H, W) of one image.
    weights : FlatParams
        Parameters of the active members; ``params`` are their (N, ...) views
        (convolution weights (N, C_out, C_in, 3, 3), biases and BatchNorm
        weights (N, C), head weight (N, n_out, C·H·W), head bias (N, n_out, 1)).
    buffers : dict of Tensor
        BatchNorm running statistics, (N, C) each (``num_batches_tracked`` (N,)).
    keys : dict of Tensor
        Per stream, the active members' keys, (N,) int64 each.
    opt : GroupOptimizer
        Over the flat buffer, one learning rate per active member.
    """

    def __init__(self, configs: list, input_shape, n_out: int, device: torch.device):
        self.input_shape, self.n_out = tuple(int(s) for s in input_shape), int(n_out)
        c0 = configs[0].model
        self.blocks, self.channels, self.bn = c0.depth - 1, c0.channels, c0.batchnorm
        self.n_in = self.input_shape[0]  # channels of the input (its BatchNorm)
        states = [init_cnn_parameters(c.model, self.input_shape, self.n_out,
                                      generator=rng.init_generator(c.seed))
                  for c in configs]
        self._stack(configs, states, device)

    def _set_members(self, ids: list) -> None:
        """Per-member settings and the parameter views for the members ``ids``."""
        self.ids = ids
        cfg = [self.configs[i] for i in ids]
        slopes = [c.model.slope for c in cfg]
        slope = torch.tensor(slopes, device=self.device)
        self.slope = slope.repeat_interleave(self.channels)  # (N·C,): per channel
        # one slope for all (a single run, the paper's CNN sweep): the native
        # kernel, three times faster backward, same numbers (both are exact)
        self.shared_slope = slopes[0] if len(set(slopes)) == 1 else None
        self.dropout = [c.model.dropout for c in cfg]
        self.dropout_t = torch.tensor(self.dropout, device=self.device)
        self.noise = [c.train.noise for c in cfg]
        self._views()

    # ----------------------------------------------------------- forward
    def _batchnorm(self, x: Tensor, name: str) -> Tensor:
        """Training-mode BatchNorm2d of each member over its batch, x (B, N·C, H, W)."""
        self.buffers[f"{name}.num_batches_tracked"].add_(1)
        return F.batch_norm(x, self.buffers[f"{name}.running_mean"].view(-1),
                            self.buffers[f"{name}.running_var"].view(-1),
                            _channels(self.params[f"{name}.weight"]),
                            _channels(self.params[f"{name}.bias"]), True, _BN_MOMENTUM, _BN_EPS)

    def dropout_masks(self, batch: int) -> "Tensor | None":
        """Per-member dropout multipliers of shape (L-1, B, N·C, H, W), or None.

        The masks of optimiser step t (0-based) are member k's ``dropout``
        stream at counter t, its entries in (layer, sample, channel, row,
        column) order (:func:`~dnn_spring.train._rng.keep_mask`); a member with
        p = 0 keeps everything.  A fixed number of tensor operations for any N.
        """
        if not any(self.dropout):
            return None
        n, c = len(self.ids), self.channels
        _, h, w = self.input_shape
        keep, scale = rng.keep_mask(self.keys["dropout"], self.opt.counter,
                                        self.blocks * batch * c * h * w, self.dropout_t)
        mult = keep.view(n, self.blocks, batch, c, h, w) * scale.view(n, 1, 1, 1, 1, 1)
        return mult.permute(1, 2, 0, 3, 4, 5).reshape(self.blocks, batch, n * c, h, w)

    def losses(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-sample cross-entropy (N, B) for images x (N, C, B, H, W) and labels y (N, B)."""
        n, c, b, h, w = x.shape
        p, drop = self.params, self.dropout_masks(b)
        # contiguous: a strided view would send BatchNorm to another kernel
        x = x.permute(2, 0, 1, 3, 4).contiguous().view(b, n * c, h, w)
        if self.bn:
            x = self._batchnorm(x, "input_bn")
        for i in range(self.blocks):
            x = grouped_conv3x3(x, p[f"blocks.{i}.conv.weight"], p[f"blocks.{i}.conv.bias"])
            if self.bn:
                x = self._batchnorm(x, f"blocks.{i}.bn")
            x = (F.leaky_relu(x, self.shared_slope) if self.shared_slope is not None
                 else ChannelLeakyReLU.apply(x, self.slope))
            x = F.interpolate(F.max_pool2d(x, 2), scale_factor=2, mode="nearest")
            if drop is not None:
                x = x * drop[i]
        if n == 1:  # a single run: the plain product (member_bmm would compute it twice)
            rows = F.linear(x.reshape(b, -1), p["head.weight"][0], p["head.bias"][0, :, 0])
        else:
            features = x.reshape(b, n, -1).permute(1, 2, 0).contiguous()  # (N, C·H·W, B)
            logits = MemberLinear.apply(features, p["head.weight"], p["head.bias"])
            rows = logits.transpose(1, 2).reshape(-1, self.n_out)  # member by member
        return F.cross_entropy(rows, y.reshape(-1), reduction="none").view(y.shape)

    # ----------------------------------------------------------- members
    def member_model(self, config, state: dict) -> CNN:
        """A :class:`~dnn_spring.train._models.CNN` of ``config`` holding ``state`` (its device)."""
        return CNN(config.model, self.input_shape, self.n_out, state=state)
