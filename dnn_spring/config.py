"""Frozen configuration dataclasses, one per concern, and their flat form.

Every field name is unique across the dataclasses, so a run config flattens to
one plain dict (``RunConfig.flat()``) and back (``RunConfig.from_flat``).  The
flat dict is what a run record carries and what ``dnn-spring collect`` puts in
its table columns; ``RunConfig.key()`` hashes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

__all__ = [
    "ModelConfig",
    "DataConfig",
    "TrainConfig",
    "RunConfig",
    "ARCHS",
    "INITS",
    "DATASETS",
    "OPTIMIZERS",
]

ARCHS = ("mlp", "cnn")
INITS = ("default", "orthogonal", "kaiming", "normal", "identity")
DATASETS = ("digits", "mnist", "fashionmnist", "cifar10", "gaussian", "random")
OPTIMIZERS = ("adam", "sgd", "sgld", "psgld")


def _check_choice(errors: list, name: str, value, choices) -> None:
    if value not in choices:
        errors.append(f"`{name}` must be one of {set(choices)}, got {value!r}")


def _check_finite(errors: list, config) -> None:
    # inf and NaN pass some range checks (`lr` > 0) and break a run; reject every one.
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            errors.append(f"`{f.name}` must be a finite number, got {value!r}")


def _check_range(errors: list, name: str, value, lo=None, hi=None, lo_open=False) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        return  # reported by _check_finite
    ok = True
    if lo is not None:
        ok = value > lo if lo_open else value >= lo
    if hi is not None and ok:
        ok = value <= hi
    if not ok:
        left = "(" if lo_open else "["
        right = "]" if hi is not None else ")"
        hi_txt = hi if hi is not None else "inf"
        errors.append(f"`{name}` must be in {left}{lo}, {hi_txt}{right}, got {value!r}")


def _raise(errors: list) -> None:
    # submitit style: one error lists every invalid parameter at once.
    if errors:
        raise ValueError("; ".join(errors))


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the network (SPEC §4).

    ``depth`` is L: an MLP has L-1 hidden blocks and one output layer; the
    CNN has ``depth`` - 1 = 7 convolutional blocks by default (depth 8).
    """

    arch: str = "mlp"
    depth: int = 8
    width: int = 100
    slope: float = 0.0
    dropout: float = 0.0
    batchnorm: bool = True
    init: str = "default"
    init_scale: float = 1.0
    zero_bias: bool = False
    channels: int = 20

    def __post_init__(self):
        e: list = []
        _check_finite(e, self)
        _check_choice(e, "arch", self.arch, ARCHS)
        _check_range(e, "depth", self.depth, 2)
        _check_range(e, "width", self.width, 1)
        _check_range(e, "slope", self.slope, 0.0, 1.0)
        _check_range(e, "dropout", self.dropout, 0.0, 1.0)
        if math.isfinite(self.dropout) and self.dropout >= 1.0:
            e.append(f"`dropout` must be < 1, got {self.dropout!r}")
        _check_choice(e, "init", self.init, INITS)
        _check_range(e, "init_scale", self.init_scale, 0.0, lo_open=True)
        _check_range(e, "channels", self.channels, 1)
        _raise(e)


@dataclass(frozen=True)
class DataConfig:
    """Which data set, how much of it, and where its files are.

    ``n_train = 0`` means the data set's own default (all of the embedded
    digits training split, 2560 for MNIST-like sets as in the paper).
    """

    dataset: str = "digits"
    n_train: int = 0
    data_root: str = "./data"
    image_size: int = 10
    data_seed: int = 0

    def __post_init__(self):
        e: list = []
        _check_finite(e, self)
        _check_choice(e, "dataset", self.dataset, DATASETS)
        _check_range(e, "n_train", self.n_train, 0)
        _check_range(e, "image_size", self.image_size, 1)
        _check_range(e, "data_seed", self.data_seed, 0)
        _raise(e)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and its noise sources (SPEC §5).

    ``batch_size = 0`` means full batch.  ``noise`` is the data/label noise p.
    ``temperature`` scales the Gaussian noise of SGLD / preconditioned SGLD.
    ``curve_every = k > 0`` records the load curve every k epochs.
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 0
    epochs: int = 100
    noise: float = 0.0
    temperature: float = 1e-4
    weight_decay: float = 0.0
    stop_loss: float = 1e-4
    stop_delta: float = 1e-10
    curve_every: int = 0
    hessian: bool = False

    def __post_init__(self):
        e: list = []
        _check_finite(e, self)
        _check_choice(e, "optimizer", self.optimizer, OPTIMIZERS)
        _check_range(e, "lr", self.lr, 0.0, lo_open=True)
        _check_range(e, "batch_size", self.batch_size, 0)
        _check_range(e, "epochs", self.epochs, 1)
        _check_range(e, "noise", self.noise, 0.0, 1.0)
        _check_range(e, "temperature", self.temperature, 0.0)
        _check_range(e, "weight_decay", self.weight_decay, 0.0)
        _check_range(e, "stop_loss", self.stop_loss, 0.0)
        _check_range(e, "stop_delta", self.stop_delta, 0.0)
        _check_range(e, "curve_every", self.curve_every, 0)
        _raise(e)


_NOT_HASHED = frozenset({"data_root"})

_PARTS = (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig))


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run: model, data, training, seed."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0

    def flat(self) -> dict:
        """Return ``{field: value}`` over all parts plus ``seed``."""
        out: dict = {}
        for part, _ in _PARTS:
            out.update(dataclasses.asdict(getattr(self, part)))
        out["seed"] = int(self.seed)
        return out

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> "RunConfig":
        """Build a config from a flat dict; unknown keys are an error."""
        known = set(flat_field_names())
        unknown = sorted(set(flat) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys are {sorted(known)}")
        parts, errors = {}, []
        for part, klass in _PARTS:
            names = {f.name for f in fields(klass)}
            try:
                parts[part] = klass(**{k: v for k, v in flat.items() if k in names})
            except ValueError as exc:
                errors.append(str(exc))
        _raise(errors)  # every invalid field of every part in one message
        return cls(**parts, seed=int(flat.get("seed", 0)))

    def replace(self, **changes) -> "RunConfig":
        """Return a copy with flat fields changed, e.g. ``replace(slope=0.2, seed=3)``."""
        flat = self.flat()
        flat.update(changes)
        return RunConfig.from_flat(flat)

    def key(self) -> str:
        """A stable 16-hex-digit hash of the flat config (the record's file name).

        ``data_root`` is left out: where the files sit does not change a run.
        """
        flat = {k: v for k, v in self.flat().items() if k not in _NOT_HASHED}
        text = json.dumps(flat, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def flat_field_names() -> list:
    """All flat config keys, in dataclass order, ``seed`` last."""
    names = [f.name for _, klass in _PARTS for f in fields(klass)]
    names.append("seed")
    return names
