"""What a sweep shows: phase diagrams, the proxy report, chain fits, animations.

Everything here reads a results table (:func:`dnn_spring.sweep.load_table`) or
the records of a sweep and draws or summarises them.
"""

from dnn_spring._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "phase_diagram": "dnn_spring.analysis._phase_plots",
    "four_panel": "dnn_spring.analysis._phase_plots",
    "curvature_map": "dnn_spring.analysis._phase_plots",
    "trajectory_grid": "dnn_spring.analysis._phase_plots",
    "proxy_correlations": "dnn_spring.analysis._proxy",
    "plot_proxies": "dnn_spring.analysis._proxy",
    "forecast": "dnn_spring.analysis._forecast",
    "plot_forecast": "dnn_spring.analysis._forecast",
    "add_weightwatcher": "dnn_spring.analysis._weightwatcher",
    "fit_sweep": "dnn_spring.analysis._chain_fits",
    "load_trajectory_records": "dnn_spring.analysis._chain_fits",
    "pick_lazy_active": "dnn_spring.analysis._chain_fits",
    "plot_spring_trajectories": "dnn_spring.analysis._chain_fits",
    "animate_chain_and_network": "dnn_spring.analysis._animate",
})
