"""Which configs train together, and how many at once (the grouping policy).

Configs of one architecture that differ only in :data:`MEMBER_FIELDS` (seed,
slope, dropout, learning rate, noise, init, SGLD temperature) can share one
batched model (:func:`group_key`); :func:`max_group_size` says how many of
them to train at once on a device.  On a CPU a CNN is trained alone: its
grouped convolutions cost more per member than plain ones (see
:data:`_CPU_CNN_GROUP`).
"""

from __future__ import annotations

import os

import torch

from dnn_spring._checks import check_items
from dnn_spring.train._config import RunConfig
from dnn_spring.train._rules import resolve_device

__all__ = ["MEMBER_FIELDS", "group_key", "check_group", "max_group_size", "fixed_group_size"]

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
# The CNN on a CPU: one at a time, 3x faster at full batch (the paper's) and
# about even at batch 10.  `benchmarks/bench_cnn.py
# --threads 1 --epochs 2 --batch-sizes 0 10` (depth 8, 20 channels, 2560 images
# of 10 x 10), s per run and epoch alone vs in a group of 8: full batch 1.38 vs
# 3.95 (1 channel) and 1.36 vs 4.33 (3 channels); batch 10 2.57 vs 2.26 and
# 2.24 vs 2.22 (oneDNN's grouped convolutions are slower per group than its
# plain ones).  On CUDA the group is sized by memory.
_CPU_CNN_GROUP = 1
# Float32 tensors of (batch, channels, H, W) per CNN block: kept for backward
# (convolution, BatchNorm, activation and upsample outputs, pooling output and
# indices, dropout multiplier and product) and drawn for the dropout masks.
_CNN_PLANES = 11


def group_key(config: RunConfig) -> tuple:
    """Configs with equal keys can be trained together by
    :func:`dnn_spring.train._group.train_group`.

    The key is the architecture and every flat field except
    :data:`MEMBER_FIELDS`.
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"`config` must be a RunConfig, got {type(config).__name__}")
    return (config.model.arch,) + tuple(sorted((k, v) for k, v in config.flat().items()
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


def _cnn_member_bytes(config: RunConfig) -> int:
    """Bytes of one CNN member: :data:`_CNN_PLANES` activations per block, the
    parameters with gradient and optimiser state, one epoch of inputs."""
    m, (n, n_in) = config.model, _shape_estimate(config)
    b = n if config.train.batch_size == 0 else min(config.train.batch_size, n)
    pixels = config.data.image_size**2
    n_params = 9 * m.channels * (n_in // pixels + (m.depth - 2) * m.channels) \
        + 10 * m.channels * pixels
    return 4 * (_CNN_PLANES * (m.depth - 1) * b * m.channels * pixels + 5 * n_params + n * n_in)


def fixed_group_size(config: RunConfig, device) -> "int | None":
    """The group size that does not depend on the machine, or None.

    A CNN on a CPU trains alone (:data:`_CPU_CNN_GROUP`), whatever the CPU; a
    Slurm sweep, which plans on a login node and sizes groups on its tasks,
    uses this to send such runs as chunks of their own.  ``device`` is only
    read by name (``"auto"`` and CUDA give None), so no GPU is needed here.
    """
    kind = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
    if config.model.arch == "cnn" and kind == "cpu":
        return _CPU_CNN_GROUP
    return None


def max_group_size(config: RunConfig, *, device="cpu") -> int:
    """Largest number of members of ``config``'s group to train at once.

    Bytes per member (float32): parameters with gradient and optimiser state
    (5·P), the activations kept for backward (≈ 8 tensors of batch × width per
    hidden layer, plus the input; for the CNN :data:`_CNN_PLANES` of batch ×
    channels × H × W per block), and one epoch of noisy, reordered inputs
    (n_train × n_in).  The budget is half the free GPU memory, or a quarter
    of the available RAM (at most 4 GiB) on the CPU; capped at 512 members.
    A CNN gets :data:`_CPU_CNN_GROUP` (1: alone) on a CPU.
    """
    dev = resolve_device(device)
    fixed = fixed_group_size(config, dev)
    if fixed is not None:
        return fixed
    if config.model.arch == "cnn":
        return int(max(1, min(_MAX_MEMBERS, _memory_budget(dev) // _cnn_member_bytes(config))))
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
        Not RunConfigs, an empty list, an MLP with BatchNorm and batch size 1, or
        members that differ outside :data:`MEMBER_FIELDS` (or in ``arch``).
    """
    configs = check_items("configs", configs, RunConfig, "RunConfig")
    if (configs[0].model.arch == "mlp" and configs[0].model.batchnorm
            and configs[0].train.batch_size == 1):
        raise ValueError("`batch_size` must be >= 2 (or 0) with BatchNorm, got 1; "
                         "BatchNorm cannot train on one sample (or pass batchnorm=False)")
    first = group_key(configs[0])
    for c in configs[1:]:
        if group_key(c) != first:
            diff = sorted(k for k, v in c.flat().items()
                          if k not in MEMBER_FIELDS and configs[0].flat()[k] != v)
            raise ValueError(f"`configs` cannot share one batched model: they differ in {diff}; "
                             "group them by dnn_spring.train._grouping.group_key first")
    return configs
