"""Which configs train together, and how many at once (the grouping policy).

MLP configs that differ only in :data:`MEMBER_FIELDS` (seed, slope, dropout,
learning rate, noise, init, SGLD temperature) share one batched model
(:func:`group_key`); :func:`max_group_size` says how many of them fit at once
on a device.  A CNN config is always trained alone.
"""

from __future__ import annotations

import os

import torch

from .checks import check_items
from .config import RunConfig
from .rules import resolve_device

__all__ = ["MEMBER_FIELDS", "group_key", "check_group", "max_group_size"]

#: Flat config fields that may differ between members of one batched group.
MEMBER_FIELDS = frozenset({"seed", "slope", "dropout", "lr", "noise", "init", "init_scale",
                           "zero_bias", "temperature"})
_MAX_MEMBERS = 512
# On a CPU a group pays once one layer's activations outgrow the caches.  Measured
# (2 threads, width 100, noise 0.2, ms per member for whole fits, groups of
# 1/2/3/4/6/8): full batch, 5 epochs: 123/114/121/104/109/101; batch 640, 2
# epochs, groups of 2/4/8/16: 64/53/44/53.  4 MiB per layer gives 4 members at
# full batch, 16 at 640, 64 at 160 and 512 (the cap) at 10.
_CPU_LAYER_BYTES = 2**22


def group_key(config: RunConfig) -> tuple:
    """Configs with equal keys can be trained together by
    :func:`dnn_spring.batched.train_group`.

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


def check_group(configs) -> list:
    """``configs`` as a list, checked to be trainable as one batched group.

    Raises
    ------
    TypeError, ValueError
        Not RunConfigs, an empty list, a CNN in a group, BatchNorm with
        batch size 1, or members that differ outside :data:`MEMBER_FIELDS`.
    """
    configs = check_items("configs", configs, RunConfig, "RunConfig")
    if configs[0].model.arch != "mlp":
        raise ValueError("`configs` must be MLP configs (arch 'mlp'); train a CNN with "
                         "dnn_spring.train.train_run")
    if configs[0].model.batchnorm and configs[0].train.batch_size == 1:
        raise ValueError("`batch_size` must be >= 2 (or 0) with BatchNorm, got 1; "
                         "BatchNorm cannot train on one sample (or pass batchnorm=False)")
    first = group_key(configs[0])
    for c in configs[1:]:
        if group_key(c) != first:
            diff = sorted(k for k, v in c.flat().items()
                          if k not in MEMBER_FIELDS and configs[0].flat()[k] != v)
            raise ValueError(f"`configs` cannot share one batched model: they differ in {diff}; "
                             "group them by dnn_spring.grouping.group_key first")
    return configs
