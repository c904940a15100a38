"""Spring–block chains: the mechanical model of feature learning (docs/science.md#chains).

* :func:`simulate_first_order` / :func:`simulate_first_order_batch` — the
  overdamped iteration with static friction (:class:`FirstOrderConfig`).
* :func:`simulate_langevin` / :func:`simulate_langevin_batch` — the Langevin
  SDE with kinetic friction (:class:`LangevinConfig`), backends
  :data:`BACKENDS` (``"numpy"``, ``"torch"``, ``"sdeint"``).
* :func:`scan_phase_diagram` and the plots in :mod:`dnn_spring.spring.plots`.
* :func:`fit_spring_block` — the chain fitted to a load curve's shape, or
  (:func:`fit_spring_block_trajectory`) to its whole course over training.

The package knows nothing of networks: it imports no training, data or
run-record module.  Chains beside networks are :mod:`dnn_spring.analysis._chain_fits`.

The chain's load curve is ``y − x_ℓ`` for ``ℓ = 0..L`` (wall first, the last
spring to the pulled end left out, like a network's logits); its loads are
the extensions ``x_ℓ − x_{ℓ−1}``.
"""

from dnn_spring._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "fit_spring_block": "dnn_spring.spring.fit",
    "SpringBlockFit": "dnn_spring.spring.fit",
    "normalise_curve": "dnn_spring.spring.fit",
    "fit_spring_block_trajectory": "dnn_spring.spring.fit_trajectory",
    "TrajectoryFit": "dnn_spring.spring.fit_trajectory",
    "as_trajectory": "dnn_spring.spring.fit_trajectory",
    "sweep_scale": "dnn_spring.spring.fit_trajectory",
    "NOISE_MODES": "dnn_spring.spring.config",
    "BACKENDS": "dnn_spring.spring.langevin",
    "SDEINT_METHODS": "dnn_spring.spring.langevin",
    "FirstOrderConfig": "dnn_spring.spring.config",
    "LangevinConfig": "dnn_spring.spring.config",
    "GaussianIncrements": "dnn_spring.spring.noise",
    "ChainResult": "dnn_spring.spring.result",
    "ChainBatchResult": "dnn_spring.spring.result",
    "chain_curve": "dnn_spring.spring.result",
    "evenness": "dnn_spring.spring.result",
    "first_order_step": "dnn_spring.spring.first_order",
    "simulate_first_order": "dnn_spring.spring.first_order",
    "simulate_first_order_batch": "dnn_spring.spring.first_order",
    "langevin_drift": "dnn_spring.spring.langevin",
    "noise_amplitude": "dnn_spring.spring.langevin",
    "euler_maruyama_step": "dnn_spring.spring.langevin",
    "simulate_langevin": "dnn_spring.spring.langevin",
    "simulate_langevin_batch": "dnn_spring.spring.langevin",
    "PHASE_DEFAULTS": "dnn_spring.spring.phase",
    "TRAJECTORY_SETTINGS": "dnn_spring.spring.phase",
    "scan_phase_diagram": "dnn_spring.spring.phase",
    "trajectory_configs": "dnn_spring.spring.phase",
    "SHADES": "dnn_spring.spring.plots",
    "plot_chain": "dnn_spring.spring.plots",
    "plot_load_curves": "dnn_spring.spring.plots",
    "plot_spring_phase_diagram": "dnn_spring.spring.plots",
    "plot_chain_trajectories": "dnn_spring.spring.plots",
})
