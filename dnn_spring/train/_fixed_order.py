"""The reproducible mode's evaluation: float64 numbers that no kernel can change.

A float32 forward pass of the same trained weights gives other last bits on
another CPU (an MKL product or a oneDNN convolution sums in an order chosen
by the CPU, an ATen kernel rounds a fused multiply-add or not), and log D,
which inverts an ill-conditioned matrix, turns 1e-7 in the features into
1e-4 in the curve.  Here every number of a record's evaluation comes from

* float64 **elementwise** IEEE operations (``+ - * /``, ``sqrt``, ``max``, a
  select), which round each element on its own, the same way in every
  kernel build;
* **exact products** (:func:`exact_matmul`): each operand is cut into two
  (three for dot products longer than 4096) slices of at most ``b``
  significant bits on a per-row (per-column) power-of-two grid, ``b`` small
  enough that every product of two slices and every partial sum of a dot
  product is an integer times one power of two below 2**52.  The BLAS then
  makes no rounding at all, in whatever order or thread split it sums, and
  the three (six) slice products are added in a fixed order.  The result is
  a fixed function of the operands, accurate to about 2**-40 of the largest
  terms, at the cost of three (six) float64 products;
* numpy's LAPACK (OpenBLAS, pinned to its Haswell kernels by
  :data:`~dnn_spring.train._reproducible.SETTINGS`) for the small C×p SVD of the
  class means, the p×p eigendecomposition of SS_W and the float32
  ``pinv`` of the original code's metric (``log_d_pinv32``).

The model's weights are float32 and used as they are (exact in float64);
inputs, activations and statistics are float64, so the mode's numbers are
close to, not equal to, the float32 evaluation of the native mode.
Supported: the package's :class:`~dnn_spring.train._models.MLP` and
:class:`~dnn_spring.train._models.CNN` (the models its trainer writes records for).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnn_spring.metrics._conditioning import cond_limit, kept_spectrum, near_singular
from dnn_spring.metrics._fuzziness import DEFAULT_MAX_INVERSE_WIDTH, DEFAULT_RTOL
from dnn_spring.train._models import CNN, MLP

__all__ = ["exact_matmul", "exact_forward", "exact_stats", "exact_curve", "exact_accuracy",
           "exact_loss", "evaluate"]

_F64 = torch.float64


# --------------------------------------------------------------------------- exact products


def _pow2(e: Tensor) -> Tensor:
    """2.0**e for int64 ``e`` in [-1022, 1023], built from its bits (no pow kernel)."""
    return torch.bitwise_left_shift(e + 1023, 52).view(_F64)


def _bits(k: int) -> "tuple[int, int]":
    """(bits per slice, slices) for dot products of length ``k``: every product of two
    slices and every partial sum stays an integer below 2**52 times one power of two;
    two slices when they keep 40 bits of each operand (k <= 4096), else three."""
    bits = (52 - max(k - 1, 1).bit_length()) // 2
    return bits, (2 if bits >= 20 else 3)


def _slices(x: Tensor, dim: int, bits: int, count: int) -> list:
    """``x`` as the sum of ``count`` slices (and a dropped rest) on the grid of its rows
    (``dim=1``) or columns (``dim=0``): slice i holds integers below 2**bits times
    2**(e - bits·(i+1)), where every entry of that row is below 2**e."""
    _, e = torch.frexp(x.abs().amax(dim=dim, keepdim=True))
    e = e.to(torch.int64).clamp(min=-1000 + bits * count, max=1023)
    rest, out = x, []
    for i in range(1, count + 1):
        scale, inverse = _pow2(e - bits * i), _pow2(bits * i - e)
        piece = torch.trunc(rest * inverse) * scale  # powers of two: no rounding anywhere
        out.append(piece)
        rest = rest - piece
    return out


def _combine(sa: list, sb: list, product) -> Tensor:
    """Σ product(sa[i], sb[j]) over i + j < len(sa), from the smallest terms to the largest."""
    out = None
    for level in reversed(range(len(sa))):
        for i in range(level + 1):
            term = product(sa[i], sb[level - i])
            out = term if out is None else out + term
    return out


def exact_matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for float64 a (n, k), b (k, m), the same bits on any CPU, BLAS and thread count.

    Every slice product is exact (see the module docstring), so the BLAS's
    order of summation cannot show; the slice products are then added from
    the smallest to the largest.
    """
    a, b = a.to(_F64), b.to(_F64)
    bits, count = _bits(a.shape[1])
    return _combine(_slices(a, 1, bits, count), _slices(b, 0, bits, count), torch.matmul)


# --------------------------------------------------------------------------- forward


def _batchnorm(module, x: Tensor) -> Tensor:
    if module.running_mean is None:
        raise TypeError("the reproducible evaluation needs BatchNorm with running statistics")
    shape = (1, -1) + (1,) * (x.dim() - 2)
    mean = module.running_mean.to(_F64).view(shape)
    std = torch.sqrt(module.running_var.to(_F64).view(shape) + module.eps)
    y = (x - mean) / std
    if module.affine:
        y = y * module.weight.to(_F64).view(shape) + module.bias.to(_F64).view(shape)
    return y


def _linear(module, x: Tensor) -> Tensor:
    y = exact_matmul(x, module.weight.detach().to(_F64).T)
    return y if module.bias is None else y + module.bias.detach().to(_F64)


_CONV_CHUNK = 1 << 22  # unfolded entries per chunk of samples


def _conv(module, x: Tensor) -> Tensor:
    """A convolution as exact products of unfolded slices: each sample's input is sliced
    on its own grid (every unfolded column of it then lies on that grid, zero padding too)."""
    plain = (module.groups == 1 and tuple(module.stride) == (1, 1)
             and tuple(module.dilation) == (1, 1) and module.padding_mode == "zeros"
             and not isinstance(module.padding, str))
    if not plain:
        raise TypeError("the reproducible evaluation supports Conv2d with stride 1, dilation 1, "
                        "one group and zero padding")
    n, c, h, w = x.shape
    (kh, kw), (ph, pw) = module.kernel_size, module.padding
    h_out, w_out = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    weight = module.weight.detach().to(_F64).reshape(module.out_channels, -1)  # (out, K)
    bits, count = _bits(weight.shape[1])
    sw = _slices(weight, 1, bits, count)
    step = max(1, _CONV_CHUNK // (weight.shape[1] * h_out * w_out))
    parts = []
    for start in range(0, n, step):
        chunk = x[start:start + step]
        cols = [F.unfold(piece.view_as(chunk), (kh, kw), padding=(ph, pw))  # (n, K, L): copies
                for piece in _slices(chunk.reshape(len(chunk), -1), 1, bits, count)]
        parts.append(_combine(sw, cols, torch.matmul))  # (n, out, L)
    out = torch.cat(parts).view(n, -1, h_out, w_out)
    return out if module.bias is None else out + module.bias.detach().to(_F64).view(1, -1, 1, 1)


def _leaf(module, x: Tensor) -> Tensor:
    if isinstance(module, nn.Linear):
        return _linear(module, x)
    if isinstance(module, nn.Conv2d):
        return _conv(module, x)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return _batchnorm(module, x)
    if isinstance(module, nn.LeakyReLU):
        return torch.where(x > 0, x, x * module.negative_slope)
    if isinstance(module, (nn.Dropout, nn.Identity)):
        return x  # eval mode
    if isinstance(module, (nn.MaxPool2d, nn.Upsample)):
        return module(x)  # a maximum, a copy: exact in any kernel
    raise TypeError(f"the reproducible evaluation does not support {type(module).__name__}")


def _run(module, x: Tensor, name: str, points: dict) -> Tensor:
    children = list(module.named_children())
    if isinstance(module, nn.Sequential):
        for child_name, child in children:
            x = _run(child, x, f"{name}.{child_name}", points)
    else:
        x = _leaf(module, x)
    if name in points:
        points[name] = x.reshape(x.shape[0], -1)
    return x


@torch.no_grad()
def exact_forward(model, x: Tensor) -> dict:
    """The load-curve points of ``model`` (an MLP or CNN, eval semantics) on inputs ``x``.

    Returns ``{point: features (n, p) float64}`` in the order of
    ``model.load_curve_layers()``; the last point is the logits (``head``).
    """
    if not isinstance(model, (MLP, CNN)):
        raise TypeError(f"the reproducible evaluation supports dnn_spring's MLP and CNN, "
                        f"got {type(model).__name__}")
    if any(t.device.type != "cpu" for t in model.parameters()):
        model = copy.deepcopy(model).cpu()
    points = dict.fromkeys(model.load_curve_layers())
    x = x.detach().to("cpu", _F64)
    if isinstance(model, MLP):
        x = x.reshape(x.shape[0], -1)
    x = _run(model.input_bn, x, "input_bn", points)
    for i, block in enumerate(model.blocks):
        x = _run(block, x, f"blocks.{i}", points)
    _run(model.head, x.reshape(x.shape[0], -1), "head", points)
    return points


def exact_accuracy(logits: Tensor, y: Tensor) -> float:
    """Fraction of rows of ``logits`` (n, C) whose first maximum is at ``y``."""
    hits = int((logits.argmax(1) == y.to(logits.device)).sum())
    return hits / max(len(y), 1)


def exact_loss(logits: Tensor, y: Tensor) -> float:
    """Mean cross-entropy of ``logits`` (n, C) at the labels ``y``, in a fixed order.

    Each row's log-sum-exp is taken with Python's ``math`` in float64 and the rows
    are summed with :func:`math.fsum`, so no kernel's vector width enters.
    """
    rows = logits.to(_F64).cpu().tolist()
    terms = []
    for row, label in zip(rows, y.tolist()):
        top = max(row)
        terms.append(top + math.log(math.fsum(math.exp(z - top) for z in row)) - row[label])
    return math.fsum(terms) / max(len(terms), 1)


# --------------------------------------------------------------------------- statistics


def _sum(x: Tensor) -> float:
    """Σ x over all entries of a float64 (n, p) tensor, in a fixed order."""
    columns = exact_matmul(x.new_ones(1, x.shape[0]), x)[0]
    return math.fsum(columns.tolist())


def _log(x: float) -> float:
    if x == 0:
        return -math.inf
    return math.log(x) if math.isfinite(x) else x


def exact_stats(x: Tensor, y: Tensor, n_classes: int, *, rtol: float = DEFAULT_RTOL,
                inverse: bool = True, max_inverse_width: int = DEFAULT_MAX_INVERSE_WIDTH) -> dict:
    """The statistics of :meth:`~dnn_spring.metrics._fuzziness.FuzzinessAccumulator.result` in fixed order.

    Parameters
    ----------
    x : tensor of shape (n, p), float64
    y : tensor of int of shape (n,), classes in ``0..n_classes-1``, each present
    inverse : bool, default True
        Form SS_W for ``log_inv_d`` and ``log_d_pinv32`` (NaN without it, or
        above ``max_inverse_width``).
    """
    if not bool(torch.isfinite(x).all()):
        raise ValueError("`features` contain NaN or inf values")
    n, p = x.shape
    y = y.to(x.device, torch.int64)
    onehot = F.one_hot(y, n_classes).to(_F64)
    counts = onehot.sum(0)  # sums of ones: exact
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"class {missing[0]} has no samples (empty classes: {missing})")
    means = exact_matmul(onehot.T, x) / counts[:, None]
    weights = counts / n
    mu = exact_matmul(weights[None, :], means)[0]
    a = weights.sqrt()[:, None] * (means - mu)  # W^{1/2} M
    _, s, vh = np.linalg.svd(a.numpy(), full_matrices=False)
    rank = int((s > rtol * s[0]).sum()) if s[0] > 0 else 0
    proj = torch.from_numpy(np.ascontiguousarray(vh[:rank].T / s[:rank]))  # V_r S_r^{-1}
    z = x - means[y]
    tr_w = _sum(z * z) / n
    tr_b = math.fsum((a * a).flatten().tolist())
    if rank == 0:
        d = math.inf if tr_w > 0 else math.nan
    else:
        u = exact_matmul(z, proj)
        d = _sum(u * u) / n
    log_inv, d32 = math.nan, math.nan
    if inverse and p <= max_inverse_width:
        ss_w = exact_matmul(z.T, z) / n
        log_inv = _log_inverse(ss_w, a, rtol)
        d32 = _pinv32(ss_w, exact_matmul(a.T, a)) if rank > 0 else d
    eig_b = torch.from_numpy(s**2)
    cond_b = kept_spectrum(eig_b, rank)
    max_rank = min(n_classes - 1, p)
    return {
        "d": d, "log_d": _log(d), "log_d_pinv32": _log(d32), "log_inv_d": log_inv,
        "log_trace_ratio": _log(tr_w) - _log(tr_b) if tr_b > 0 else math.inf,
        "rank_b": rank, "max_rank_b": max_rank, "cond_b": cond_b,
        "near_singular": near_singular(rank, max_rank, cond_b, cond_limit("lowrank", rtol, p)),
        "width": p, "n_samples": n, "n_classes": n_classes,
    }


def _pinv32(ss_w: Tensor, ss_b: Tensor) -> float:
    """The original code's ``trace(SS_W @ pinv(SS_B))`` in float32, through numpy's LAPACK:
    the cut of :func:`~dnn_spring.metrics._conditioning.pinv32_fuzziness` (``p · eps32`` of the
    largest singular value), not torch's vendor LAPACK."""
    sb, sw = ss_b.numpy().astype(np.float32), ss_w.numpy().astype(np.float32)
    u, s, vh = np.linalg.svd(sb)
    keep = s > s[0] * sb.shape[0] * np.finfo(np.float32).eps if s[0] > 0 else s < 0
    pinv = (vh[keep].T / s[keep]) @ u[:, keep].T
    return float(np.trace(sw @ pinv))


def _log_inverse(ss_w: Tensor, a: Tensor, rtol: float) -> float:
    """log Tr(SS_B SS_W^+) = log Tr(A SS_W^+ A^T), eigenvalues below rtol²·top dropped."""
    evals, evecs = np.linalg.eigh(ss_w.numpy())
    top = float(evals[-1])
    if top <= 0:
        return math.inf
    keep = evals > rtol**2 * top
    proj = exact_matmul(a, torch.from_numpy(np.ascontiguousarray(evecs[:, keep])))
    weighted = (proj * proj) / torch.from_numpy(evals[keep])
    return _log(math.fsum(weighted.flatten().tolist()))


# --------------------------------------------------------------------------- the curve


def exact_curve(model, x: Tensor, y: Tensor, n_classes: int, *,
                inverse: bool = True) -> "tuple[pd.DataFrame, Tensor]":
    """The load curve of ``model`` on ``(x, y)`` in fixed order, and its logits (n, C).

    The frame has the columns of :func:`~dnn_spring.capture.load_curve` that a
    record and :func:`~dnn_spring.metrics.load_shape` use.
    """
    points = exact_forward(model, x)
    modules = dict(model.named_modules())
    rows = []
    for i, (name, feats) in enumerate(points.items()):
        stats = exact_stats(feats, y.cpu(), n_classes, inverse=inverse)
        rows.append({"layer": name, "point": i, "module": type(modules[name]).__name__,
                     **{k: stats[k] for k in ("width", "n_samples", "log_d", "log_inv_d",
                                             "log_trace_ratio", "log_d_pinv32", "rank_b",
                                             "max_rank_b", "cond_b", "near_singular")},
                     "is_logits": name == model.logits_layer})
    frame = pd.DataFrame(rows)
    frame.insert(frame.columns.get_loc("is_logits"), "load", -frame["log_d"].diff())
    return frame, points[model.logits_layer]


def evaluate(model, data) -> "tuple[float, float, float, pd.DataFrame]":
    """``(train_acc, test_acc, clean_train_loss, curve)`` of a trained ``model`` on a
    Dataset, in fixed order (the loss: mean cross-entropy on the clean training labels)."""
    frame, logits = exact_curve(model, data.x_train, data.y_train, data.n_classes)
    test_logits = exact_forward(model, data.x_test)[model.logits_layer]
    return (exact_accuracy(logits, data.y_train.cpu()),
            exact_accuracy(test_logits, data.y_test.cpu()),
            exact_loss(logits, data.y_train.cpu()), frame)
