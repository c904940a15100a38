"""Sizes checked against the machine before anything is allocated (``train``, ``sweep``).

Each check estimates a *lower bound* of the bytes a request needs and refuses
it (ValueError, so exit 2 with one line) when that is more than the memory
the machine has free, so a model or a grid that could never fit fails in a
second instead of growing until the kernel kills it:

- a model (:func:`check_model`): 4 float32 copies of its weights (the
  weights, their gradients, Adam's two moments) and one float32 activation
  per sample, unit and layer of a full-batch step;
- a synthetic training set (:func:`check_n_train`): its float32 inputs; a
  fixed data set's ``--n-train`` is checked against the samples it has;
- a grid (:func:`check_grid`): :data:`BYTES_PER_CONFIG` per run, before the
  grid (and its seed sequence) is expanded;
- a thread count (:func:`check_threads`): at most ``os.cpu_count()``.

The free memory is ``MemAvailable`` of ``/proc/meminfo`` (the physical memory
elsewhere), capped by the cgroup's limit, or the free memory of a CUDA
device for ``--device cuda``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["available_bytes", "model_bytes", "check_model", "check_n_train", "check_grid",
           "check_threads", "TRAIN_SAMPLES", "BYTES_PER_CONFIG"]

#: Training samples of the fixed data sets (the embedded splits: 1797 - 360
#: digits and 5000 - 2440 MNIST samples; the torchvision training sets).
TRAIN_SAMPLES = {"digits": 1437, "mnist5k": 2560, "mnist": 60000, "fashionmnist": 60000,
                 "cifar10": 50000}
#: Bytes one run of a grid holds while a sweep plans it (config, key, plan);
#: measured about 700 with tracemalloc, doubled.
BYTES_PER_CONFIG = 1500
_SYNTHETIC_DIM = 100
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"


def _host_bytes() -> int:
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            free = 1 << 62  # no way to tell: refuse nothing
    for name in _CGROUP_LIMITS:
        try:
            free = min(free, int(Path(name).read_text().strip()))
        except (OSError, ValueError):  # absent, or "max"
            continue
    return free


def available_bytes(device: str = "cpu") -> "tuple[int, str]":
    """``(bytes, where)``: the memory a run may take on ``device`` and what that is."""
    if str(device).startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info(torch.device(device))
            return int(free), f"free on {device}"
    return _host_bytes(), "available on this machine"


def model_bytes(config) -> int:
    """A lower bound of the bytes training ``config`` (a RunConfig) takes."""
    m = config.model
    samples = TRAIN_SAMPLES.get(config.data.dataset, config.data.n_train or 2560)
    if config.data.n_train:
        samples = config.data.n_train
    if config.train.batch_size:
        samples = min(samples, config.train.batch_size)
    if m.arch == "cnn":
        side = config.data.image_size
        weights = 9 * m.channels * m.channels * max(0, m.depth - 2) + 9 * m.channels
        units = m.channels * side * side
    else:
        weights = m.width * m.width * max(0, m.depth - 2) + 2 * m.width
        units = m.width
    return 16 * weights + 4 * samples * units * (m.depth - 1)


def check_model(config, device: str = "cpu") -> None:
    """Raise ValueError when the model of ``config`` cannot fit in memory."""
    need = model_bytes(config)
    have, where = available_bytes(device)
    if need > have:
        m = config.model
        size = (f"--depth {m.depth} --channels {m.channels}" if m.arch == "cnn"
                else f"--depth {m.depth} --width {m.width}")
        raise ValueError(f"`{size}`: training this {m.arch.upper()} needs at least {_gib(need)}, "
                         f"{_gib(have)} is {where}")


def check_n_train(config, device: str = "cpu") -> None:
    """Raise ValueError when ``--n-train`` is more than the data set has or memory holds."""
    n, name = config.data.n_train, config.data.dataset
    if name in TRAIN_SAMPLES and n > TRAIN_SAMPLES[name]:
        raise ValueError(f"`--n-train` must be <= {TRAIN_SAMPLES[name]} for {name} "
                         f"(its training samples), got {n}")
    need = 4 * n * _SYNTHETIC_DIM
    have, where = available_bytes(device)
    if need > have:
        raise ValueError(f"`--n-train {n}`: the {name} training set needs at least {_gib(need)}, "
                         f"{_gib(have)} is {where}")


def check_grid(n_configs: int, flag: str = "--seeds") -> None:
    """Raise ValueError when a grid of ``n_configs`` runs cannot be held in memory."""
    need = int(n_configs) * BYTES_PER_CONFIG
    have, where = available_bytes("cpu")
    if need > have:
        raise ValueError(f"`{flag}`: the grid has {n_configs} runs, which need at least "
                         f"{_gib(need)}; {_gib(have)} is {where}")


def check_threads(threads: "int | None", flag: str = "--threads") -> None:
    """Raise ValueError unless ``1 <= threads <= os.cpu_count()`` (None: the default)."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"`{flag}` must be >= 1, got {threads}")
    cpus = os.cpu_count() or 1
    if threads > cpus:
        raise ValueError(f"`{flag}` must be <= {cpus} (the CPUs of this machine), got {threads}")
