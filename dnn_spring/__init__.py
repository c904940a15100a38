"""dnn_spring: the spring–block theory of feature learning, made usable.

Measure how each layer of a network separates classes (the load curve), sweep
noise against nonlinearity to draw phase diagrams, and simulate the
spring–block chains that explain them.

The subpackages, each built only on those before it:

- :mod:`dnn_spring.metrics`: separation fuzziness, curve shape, curvature;
- :mod:`dnn_spring.capture`: any ``nn.Module`` to its load curve, the tracker, diagnose;
- :mod:`dnn_spring.spring`: the spring–block chains (they know nothing of networks);
- :mod:`dnn_spring.train`: the paper's networks and data, single runs and groups;
- :mod:`dnn_spring.sweep`: grids of runs, locally or on Slurm, and their tables;
- :mod:`dnn_spring.analysis`: phase diagrams, the proxy report, chain fits;
- :mod:`dnn_spring.integrations`: Lightning and Hugging Face callbacks;
- :mod:`dnn_spring.cli`: the ``dnn-spring`` command.

The names below are the ones a researcher uses most; each loads its module on
first use, so ``import dnn_spring`` costs little more than ``import torch``.
"""

from dnn_spring import _startup  # noqa: F401  (first: it must run before torch loads)
from dnn_spring import _deprecated
from dnn_spring._lazy import attach
from dnn_spring._version import __version__

_deprecated.install()

__getattr__, __dir__, __all__ = attach(__name__, {
    "load_curve": "dnn_spring.capture._load_curve",
    "list_layers": "dnn_spring.capture._load_curve",
    "transformer_blocks": "dnn_spring.capture._blocks",
    "LoadCurveTracker": "dnn_spring.capture._tracker",
    "diagnose": "dnn_spring.capture._diagnose",
    "separation_fuzziness": "dnn_spring.metrics._fuzziness",
    "load_shape": "dnn_spring.metrics._shape",
    "RunConfig": "dnn_spring.train._config",
    "ModelConfig": "dnn_spring.train._config",
    "DataConfig": "dnn_spring.train._config",
    "TrainConfig": "dnn_spring.train._config",
    "load_dataset": "dnn_spring.train._data",
    "build_model": "dnn_spring.train._models",
    "train_run": "dnn_spring.train._run",
    "train_group": "dnn_spring.train._group",
    "expand_grid": "dnn_spring.sweep._grids",
    "run_sweep": "dnn_spring.sweep._runner",
    "load_table": "dnn_spring.sweep._store",
    "phase_diagram": "dnn_spring.analysis._phase_plots",
    "FirstOrderConfig": "dnn_spring.spring.config",
    "LangevinConfig": "dnn_spring.spring.config",
    "simulate_first_order": "dnn_spring.spring.first_order",
    "simulate_langevin": "dnn_spring.spring.langevin",
    "fit_spring_block": "dnn_spring.spring.fit",
}, moved=_deprecated.TOP_LEVEL)
__all__ = ["__version__", *__all__]
