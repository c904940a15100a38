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

from dnn_spring._checks import choice_problem, finite_problems, raise_all, range_problem

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
DATASETS = ("mnist5k", "digits", "mnist", "fashionmnist", "cifar10", "gaussian", "random")
OPTIMIZERS = ("adam", "sgd", "sgld", "psgld")
#: Classes of every data set of DATASETS.
N_CLASSES = 10


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the network (docs/science.md#networks).

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
        e = finite_problems(self)
        e.append(choice_problem("arch", self.arch, ARCHS))
        e.append(range_problem("depth", self.depth, 2))
        e.append(range_problem("width", self.width, 1))
        e.append(range_problem("slope", self.slope, 0.0, 1.0))
        e.append(range_problem("dropout", self.dropout, 0.0, 1.0))
        if math.isfinite(self.dropout) and self.dropout >= 1.0:
            e.append(f"`dropout` must be < 1, got {self.dropout!r}")
        e.append(choice_problem("init", self.init, INITS))
        e.append(range_problem("init_scale", self.init_scale, 0.0, lo_open=True))
        e.append(range_problem("channels", self.channels, 1))
        raise_all(e)


@dataclass(frozen=True)
class DataConfig:
    """Which data set, how much of it, and where its files are.

    ``n_train = 0`` means the data set's own default (all of the embedded
    digits or mnist5k training split, 2560 for MNIST-like sets as in the paper).
    """

    dataset: str = "digits"
    n_train: int = 0
    data_root: str = "./data"
    image_size: int = 10
    data_seed: int = 0

    def __post_init__(self):
        e = finite_problems(self)
        e.append(choice_problem("dataset", self.dataset, DATASETS))
        e.append(range_problem("n_train", self.n_train, 0))
        if isinstance(self.n_train, int) and 0 < self.n_train < N_CLASSES:
            e.append(f"`n_train` must be 0 (the data set's default) or at least {N_CLASSES}, one "
                     f"sample per class, got {self.n_train}: fewer samples cannot train or "
                     "measure a load curve")
        e.append(range_problem("image_size", self.image_size, 1))
        e.append(range_problem("data_seed", self.data_seed, 0))
        raise_all(e)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and its noise sources (docs/science.md#training-and-noise).

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
        # inf and NaN pass some range checks (`lr` > 0) and break a run; reject every one.
        e = finite_problems(self)
        e.append(choice_problem("optimizer", self.optimizer, OPTIMIZERS))
        e.append(range_problem("lr", self.lr, 0.0, lo_open=True))
        e.append(range_problem("batch_size", self.batch_size, 0))
        e.append(range_problem("epochs", self.epochs, 1))
        e.append(range_problem("noise", self.noise, 0.0, 1.0))
        e.append(range_problem("temperature", self.temperature, 0.0))
        e.append(range_problem("weight_decay", self.weight_decay, 0.0))
        e.append(range_problem("stop_loss", self.stop_loss, 0.0))
        e.append(range_problem("stop_delta", self.stop_delta, 0.0))
        e.append(range_problem("curve_every", self.curve_every, 0))
        raise_all(e)


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
        raise_all(errors)  # every invalid field of every part in one message
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
