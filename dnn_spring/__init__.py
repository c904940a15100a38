"""dnn_spring: the spring–block theory of feature learning, made usable.

Measure how each layer of a network separates classes (the load curve), sweep
noise against nonlinearity to draw phase diagrams, and simulate the
spring–block chains that explain them.
"""

from dnn_spring import _startup  # noqa: F401  (first: it must run before torch loads)
from dnn_spring._version import __version__

from dnn_spring.capture import list_layers, load_curve
from dnn_spring.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from dnn_spring.data import Dataset, load_dataset
from dnn_spring.hessian import hessian_top_eigenvalue, hessian_trace
from dnn_spring.metrics import FuzzinessAccumulator, separation_fuzziness, separation_stats
from dnn_spring.models import CNN, MLP, build_model, init_cnn_parameters, init_mlp_parameters
from dnn_spring.shape import LoadShape, load_shape
from dnn_spring.tracker import LoadCurveTracker
from dnn_spring.diagnose import Diagnosis, diagnose
from dnn_spring.train import train_run
from dnn_spring.batched import train_group
from dnn_spring.grids import SWEEPS, expand_grid
from dnn_spring.records import collect, load_table
from dnn_spring.sweep import run_sweep
from dnn_spring.plots import curvature_map, four_panel, phase_diagram, trajectory_grid
from dnn_spring.spring import (
    FirstOrderConfig,
    LangevinConfig,
    scan_phase_diagram,
    simulate_first_order,
    simulate_langevin,
    simulate_langevin_batch,
)
from dnn_spring.compare import load_trajectory_records, pick_lazy_active, plot_spring_trajectories

__all__ = [
    "__version__",
    "separation_fuzziness",
    "separation_stats",
    "FuzzinessAccumulator",
    "list_layers",
    "load_curve",
    "load_shape",
    "LoadShape",
    "LoadCurveTracker",
    "diagnose",
    "Diagnosis",
    "ModelConfig",
    "DataConfig",
    "TrainConfig",
    "RunConfig",
    "MLP",
    "CNN",
    "build_model",
    "init_mlp_parameters",
    "init_cnn_parameters",
    "Dataset",
    "load_dataset",
    "hessian_top_eigenvalue",
    "hessian_trace",
    "train_run",
    "train_group",
    "SWEEPS",
    "expand_grid",
    "run_sweep",
    "collect",
    "load_table",
    "phase_diagram",
    "four_panel",
    "curvature_map",
    "trajectory_grid",
    "FirstOrderConfig",
    "LangevinConfig",
    "simulate_first_order",
    "simulate_langevin",
    "simulate_langevin_batch",
    "scan_phase_diagram",
    "load_trajectory_records",
    "pick_lazy_active",
    "plot_spring_trajectories",
]
