"""Spring–block chains: the mechanical model of feature learning (SPEC §7).

* :func:`simulate_first_order` / :func:`simulate_first_order_batch` — the
  overdamped iteration with static friction (:class:`FirstOrderConfig`).
* :func:`simulate_langevin` / :func:`simulate_langevin_batch` — the Langevin
  SDE with kinetic friction (:class:`LangevinConfig`), backends
  :data:`BACKENDS` (``"numpy"``, ``"torch"``, ``"sdeint"``).
* :func:`scan_phase_diagram` and the plots in :mod:`dnn_spring.spring.plots`.
* :func:`fit_spring_block` — the chain fitted to a load curve's shape, or
  (:func:`fit_spring_block_trajectory`) to its whole course over training.

The package knows nothing of networks: it imports no training, data or
run-record module.  Chains beside networks are :mod:`dnn_spring.compare`.

The chain's load curve is ``y − x_ℓ`` for ``ℓ = 0..L`` (wall first, the last
spring to the pulled end left out, like a network's logits); its loads are
the extensions ``x_ℓ − x_{ℓ−1}``.
"""

from dnn_spring.spring.config import NOISE_MODES, FirstOrderConfig, LangevinConfig
from dnn_spring.spring.first_order import (
    first_order_step,
    simulate_first_order,
    simulate_first_order_batch,
)
from dnn_spring.spring.langevin import (
    BACKENDS,
    SDEINT_METHODS,
    euler_maruyama_step,
    langevin_drift,
    noise_amplitude,
    simulate_langevin,
    simulate_langevin_batch,
)
from dnn_spring.spring.noise import GaussianIncrements
from dnn_spring.spring.phase import (
    PHASE_DEFAULTS,
    TRAJECTORY_SETTINGS,
    scan_phase_diagram,
    trajectory_configs,
)
from dnn_spring.spring.plots import (
    SHADES,
    plot_chain,
    plot_chain_trajectories,
    plot_load_curves,
    plot_spring_phase_diagram,
)
from dnn_spring.spring.result import ChainBatchResult, ChainResult, chain_curve, evenness
from dnn_spring.spring.fit import SpringBlockFit, fit_spring_block, normalise_curve
from dnn_spring.spring.fit_trajectory import (
    TrajectoryFit,
    as_trajectory,
    fit_spring_block_trajectory,
    sweep_scale,
)

__all__ = [
    "fit_spring_block",
    "SpringBlockFit",
    "normalise_curve",
    "fit_spring_block_trajectory",
    "TrajectoryFit",
    "as_trajectory",
    "sweep_scale",
    "NOISE_MODES",
    "BACKENDS",
    "SDEINT_METHODS",
    "FirstOrderConfig",
    "LangevinConfig",
    "GaussianIncrements",
    "ChainResult",
    "ChainBatchResult",
    "chain_curve",
    "evenness",
    "first_order_step",
    "simulate_first_order",
    "simulate_first_order_batch",
    "langevin_drift",
    "noise_amplitude",
    "euler_maruyama_step",
    "simulate_langevin",
    "simulate_langevin_batch",
    "PHASE_DEFAULTS",
    "TRAJECTORY_SETTINGS",
    "scan_phase_diagram",
    "trajectory_configs",
    "SHADES",
    "plot_chain",
    "plot_load_curves",
    "plot_spring_phase_diagram",
    "plot_chain_trajectories",
]
