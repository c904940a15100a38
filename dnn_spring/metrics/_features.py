"""Layer features and class labels, checked and converted once for the metrics.

Features become float64 tensors of shape (n, p) (trailing axes flattened, any
real dtype accepted); labels become int64 class indices of shape (n,).  Bad
input is one ``TypeError`` or ``ValueError`` naming the argument.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["as_features", "as_labels", "check_not_empty", "feature_label_pairs"]


def as_features(x) -> torch.Tensor:
    """Return ``x`` as a float64 tensor of shape (n, p), flattening trailing axes.

    Any real dtype (float32, float16, integers, bool) is converted.
    """
    if isinstance(x, np.ndarray):
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise TypeError(f"`features` must hold real numbers, got dtype {x.dtype}")
        x = torch.from_numpy(x)
    elif not isinstance(x, torch.Tensor):
        raise TypeError(f"`features` must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError("`features` must have shape (n_samples, ...), got a scalar")
    if x.is_complex():
        raise TypeError(f"`features` must hold real numbers, got dtype {x.dtype}")
    width = math.prod(x.shape[1:])
    if width == 0:
        raise ValueError("`features` must have at least one feature per sample, "
                         f"got shape {tuple(x.shape)}")
    x = x.detach()
    # Never modified in place below, so float64 input is used without a copy.
    return x.reshape(x.shape[0], width).to(torch.float64)


def check_not_empty(x) -> None:
    """``x``: features as given (an array, before :func:`as_features`)."""
    if getattr(x, "ndim", 0) and x.shape[0] == 0:
        raise ValueError(f"`features` must hold at least one sample, got shape {tuple(x.shape)}")


def as_labels(y, n: int, device) -> torch.Tensor:
    """Return ``y`` as an int64 tensor of shape (n,) on ``device``."""
    if isinstance(y, np.ndarray):
        y = torch.from_numpy(y)
    elif not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y)
    y = y.detach().reshape(-1)
    if y.is_floating_point():
        if not bool(torch.all(y == torch.round(y))):
            raise ValueError("`labels` must be integers, got non-integer floats")
    elif y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"`labels` must be integers, got dtype {y.dtype}")
    if y.numel() != n:
        raise ValueError(f"`features` and `labels` must have the same length, got {n} and {y.numel()}")
    y = y.to(device=device, dtype=torch.int64).contiguous()  # a strided shard (y[rank::world]) too
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"`labels` must be non-negative class indices, got {int(y.min())}")
    return y


def feature_label_pairs(batches):
    """Each ``(features, labels)`` of an iterable of batches (extra items ignored)."""
    for item in batches:
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ValueError("each batch must be a pair (features, labels); got data with no labels")
        yield item[0], item[1]
