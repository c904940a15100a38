"""The per-member kernels of the batched MLP (:mod:`dnn_spring.train._group`).

A member's result must not depend on the group it was trained in (its size,
its other members, its position in it) nor on the number of threads.  Most
CPU kernels do not promise that: a reduction or an elementwise kernel may
treat the last few elements of a tensor (a scalar tail after the vector
loop) or the seam between two threads' chunks differently, and where a
member's elements fall depends on N.  Measured on torch 2.14 (AVX2): the
native channels-last ``batch_norm``, ``sum(0)`` over (B, N, F), ``lerp`` and
the fused Adam kernel all changed a member's last bits with N or with its
position; ``torch.bmm`` changed them between N = 1 and N > 1 (a batch of one
is multiplied with all threads, a larger batch one matrix per thread).

So activations are laid out (N, F, B), member first, features, samples
last, and every step is built from pieces that treat each member's block the
same way whatever N is:

* products are ``torch.bmm`` / ``torch.baddbmm`` over per-member matrices,
  in an orientation chosen by the batch size alone, with a contiguous result
  whose member stride is a multiple of 64 bytes, and a group of one
  computed as two (:func:`member_bmm`);
* sums over samples reduce contiguous rows (:func:`member_sum`);
* BatchNorm is the native kernel on a (1, N·F, B) view, whose statistics,
  normalisation and backward run channel by channel (in float64 on the CPU);
* elementwise work is exact (``prelu``, ``threshold_backward``, ``+``,
  ``-``, ``*``), never a fused multiply-add whose vector body and scalar tail
  may round differently.

The optimiser side of the same rule lives in :mod:`dnn_spring.train._group_mlp`
(parameters in one flat buffer whose rows are padded to whole vectors).
``tests/train/test_group.py`` checks the result: records equal bit for bit in
groups of 1, 2, 3, 4 and 8 under 1 and 2 threads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["member_bmm", "member_sum", "MemberLinear", "MemberLeakyReLU", "member_batchnorm"]


# MKL's batched sgemm treats a matrix by the alignment of its result: with
# an odd member stride, odd members were multiplied by other kernels
# (measured: the head, 10 x 100 @ 100 x 7 at the last partial batch).
# torch.bmm only hands MKL a batch when the result is contiguous, so the
# result gets a member stride that is a multiple of 16 floats (64 bytes) by
# padding its rows (the extra rows of the left operand are zero and their
# products are dropped).  Misaligned operands measured harmless.
_ALIGN = 16  # floats


def _dense_items(t: Tensor) -> bool:
    n, r, c = t.shape
    return (t.stride(2) == 1 and t.stride(1) == c) or (t.stride(1) == 1 and t.stride(2) == r)


def _aligned(t: Tensor, m: int, rows: int) -> Tensor:
    """``t`` (n, r, k) as m >= n matrices of ``rows`` >= r rows.

    Extra matrices repeat matrix 0; extra rows are zero.  Copies (64-byte
    aligned) only when needed, keeping each matrix row- or column-major and, where it was
    aligned, its member stride: MKL's choice of kernel depends on both.
    """
    n, r, k = t.shape
    if n == m and rows == r and _dense_items(t):
        return t
    column_major = t.stride(2) != 1 and t.stride(1) == 1
    per = -(-rows * k // _ALIGN) * _ALIGN
    if t.stride(0) % _ALIGN == 0 and t.data_ptr() % (4 * _ALIGN) == 0 and rows == r:
        per = max(per, t.stride(0))
    buf = (t.new_zeros if rows > r else t.new_empty)(m, per)[:, :rows * k]
    out = buf.view(m, k, rows).transpose(1, 2) if column_major else buf.view(m, rows, k)
    out[:n, :r].copy_(t)
    if m > n:
        out[n:, :r].copy_(t[:1].expand(m - n, r, k))
    return out


def member_bmm(a: Tensor, b: Tensor, bias: "Tensor | None" = None) -> Tensor:
    """``a[n] @ b[n] (+ bias[n])`` for every member n; a (N, i, k), b (N, k, j) → (N, i, j).

    The same for every member whatever N and its position: every matrix is
    64-byte aligned, the result contiguous (see ``_ALIGN``), and a group of
    one is computed as a group of two (the same matrix twice), since
    ``torch.bmm`` hands a batch of one to a multi-threaded product that sums
    in another order.  Returns a view of the padded result.
    """
    n, r, c = a.shape[0], a.shape[1], b.shape[2]
    m = max(n, 2)
    rows = r
    while rows * c % _ALIGN:
        rows += 1
    a, b = _aligned(a, m, rows), _aligned(b, m, b.shape[1])
    if bias is None:
        out = torch.bmm(a, b)
    else:
        out = a.new_empty(m, rows, c)
        out[:n, :r].copy_(bias)
        if m > n:
            out[n:, :r].copy_(bias[:1].expand(m - n, -1, -1))
        out.baddbmm_(a, b)
    return out[:n, :r]


def member_sum(x: Tensor) -> Tensor:
    """Sum over the last axis of x (N, F, B) → (N, F, 1), the same for every group size.

    On a contiguous tensor this is a row-by-row reduction whose order
    depends on B only (measured invariant to N, the member's position and
    1 or 2 threads); a transposed view would be summed by another kernel.
    """
    return x.contiguous().sum(2, keepdim=True)


# From this batch size on, ``W @ x`` is multiplied as fast as ``x^T W^T`` or
# faster and writes the (N, out, B) layout directly (measured, 2 threads,
# width 100: 2.6 vs 4.2 ms with the transposing copy at N = 4, B = 2560;
# 3.0 vs 4.7 ms at N = 64, B = 160); below it, ``x^T W^T`` is the fast one
# (0.21 vs 0.92 ms at N = 60, B = 10).  The choice depends on B only, never
# on N, so a member's products do not depend on its group.
_NATURAL_FROM_BATCH = 64


class MemberLinear(torch.autograd.Function):
    """Per-member ``W @ x + b`` on x (N, in, B), W (N, out, in), b (N, out, 1) → (N, out, B).

    Each product is taken in the orientation MKL's batched sgemm does
    fastest for the batch size (see ``_NATURAL_FROM_BATCH``); results that
    come out transposed are returned as views (and the input gradient is
    made contiguous, as BatchNorm's backward needs).
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        batch = x.shape[2]
        if batch >= _NATURAL_FROM_BATCH:
            return member_bmm(weight, x, bias.expand(-1, -1, batch))
        bias_t = bias.transpose(1, 2).expand(-1, batch, -1)
        return member_bmm(x.transpose(1, 2), weight.transpose(1, 2), bias_t).transpose(1, 2)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[0]:
            if x.shape[2] >= _NATURAL_FROM_BATCH:
                grad_x = member_bmm(weight.transpose(1, 2), grad)
            else:
                grad_x = member_bmm(grad.transpose(1, 2), weight).transpose(1, 2)
            # contiguous: BatchNorm's backward must not see a transposed (1, F, B) view
            grad_x = grad_x.contiguous()
        return grad_x, member_bmm(grad, x.transpose(1, 2)), member_sum(grad)


class MemberLeakyReLU(torch.autograd.Function):
    """LeakyReLU with slope ``slope[n]`` (in [0, 1]) for member n of x (N, F, B).

    Forward: the native ``prelu`` on a (1, N, F·B) view, the member as its
    channel (one multiply and one select per entry).  Backward, exact too:
    ``p + (g - p)·α`` with ``p = g·[out > 0]`` from ``threshold_backward``
    (for α >= 0 the output is positive exactly where x is).  Both run over
    whole tensors at memory speed; ``torch.where`` and ``torch.maximum`` with
    a broadcast slope took 15-20x longer here.
    """

    @staticmethod
    def forward(ctx, x, slope):
        n, f, b = x.shape
        out = F.prelu(x.contiguous().view(1, n, f * b), slope).view(n, f, b)
        ctx.save_for_backward(out, slope)
        return out

    @staticmethod
    def backward(ctx, grad):
        out, slope = ctx.saved_tensors
        positive = torch.ops.aten.threshold_backward(grad, out, 0.0)
        return positive + (grad - positive) * slope.view(-1, 1, 1), None


def member_batchnorm(x: Tensor, weight: Tensor, bias: Tensor, running_mean: Tensor,
                     running_var: Tensor, *, momentum: float, eps: float) -> Tensor:
    """Training-mode BatchNorm of each member over its own batch.

    x (N, F, B); weight, bias (N, F) (autograd flows through them);
    running_mean, running_var (N, F), updated in place with PyTorch's rule
    (unbiased running variance).  The native kernel runs on a (1, N·F, B)
    view, i.e. one channel per (member, feature).
    """
    n, f, b = x.shape
    # contiguous first: a (1, F, B) transposed view would reshape without a
    # copy and send a group of one to the channels-last kernel
    out = F.batch_norm(x.contiguous().view(1, n * f, b), running_mean.view(-1), running_var.view(-1),
                       weight.reshape(-1), bias.reshape(-1), True, momentum, eps)
    return out.view(n, f, b)
