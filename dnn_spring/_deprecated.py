"""Old import paths of 0.x, kept for one release with a ``DeprecationWarning``.

Until 0.9 every module sat directly in ``dnn_spring/`` and the top level
exported 45 names.  The modules now live in subpackages (see
:mod:`dnn_spring`); ``import dnn_spring.grids`` still works and gives the
module's new home, and the names dropped from the top level are still read
from there, each with a warning that names the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# old module -> the module it became
MODULES = {
    "dnn_spring.animate": "dnn_spring.analysis._animate",
    "dnn_spring.batched": "dnn_spring.train._group",
    "dnn_spring.batches": "dnn_spring.capture._inputs",
    "dnn_spring.blocks": "dnn_spring.capture._blocks",
    "dnn_spring.checkpoint": "dnn_spring.train._checkpoint",
    "dnn_spring.checks": "dnn_spring._checks",
    "dnn_spring.chunk": "dnn_spring.sweep._task",
    "dnn_spring.compare": "dnn_spring.analysis._chain_fits",
    "dnn_spring.conditioning": "dnn_spring.metrics._conditioning",
    "dnn_spring.config": "dnn_spring.train._config",
    "dnn_spring.data": "dnn_spring.train._data",
    "dnn_spring.diagnose": "dnn_spring.capture._diagnose",
    "dnn_spring.distributed": "dnn_spring.metrics._distributed",
    "dnn_spring.executors": "dnn_spring.sweep._executors",
    "dnn_spring.features": "dnn_spring.metrics._features",
    "dnn_spring.fixed_order": "dnn_spring.train._fixed_order",
    "dnn_spring.graphs": "dnn_spring.train._cuda_graphs",
    "dnn_spring.grids": "dnn_spring.sweep._grids",
    "dnn_spring.grouping": "dnn_spring.train._grouping",
    "dnn_spring.hessian": "dnn_spring.metrics._hessian",
    "dnn_spring.locks": "dnn_spring.sweep._locks",
    "dnn_spring.member_ops": "dnn_spring.train._member_ops",
    "dnn_spring.models": "dnn_spring.train._models",
    "dnn_spring.optim": "dnn_spring.train._optim",
    "dnn_spring.passes": "dnn_spring.capture._hooks",
    "dnn_spring.plots": "dnn_spring.analysis._phase_plots",
    "dnn_spring.points": "dnn_spring.capture._points",
    "dnn_spring.pooling": "dnn_spring.capture._pooling",
    "dnn_spring.preempt": "dnn_spring.train._preempt",
    "dnn_spring.probes": "dnn_spring.metrics._probes",
    "dnn_spring.records": "dnn_spring.sweep._store",
    "dnn_spring.report": "dnn_spring.analysis._proxy",
    "dnn_spring.reproducible": "dnn_spring.train._reproducible",
    "dnn_spring.rules": "dnn_spring.train._rules",
    "dnn_spring.run_record": "dnn_spring.train._record",
    "dnn_spring.saved": "dnn_spring.train._saved",
    "dnn_spring.shape": "dnn_spring.metrics._shape",
    "dnn_spring.slurm": "dnn_spring.sweep._slurm",
    "dnn_spring.slurm_follow": "dnn_spring.sweep._slurm_status",
    "dnn_spring.stacked": "dnn_spring.train._group_mlp",
    "dnn_spring.stacked_cnn": "dnn_spring.train._group_cnn",
    "dnn_spring.streams": "dnn_spring.train._rng",
    "dnn_spring.tracker": "dnn_spring.capture._tracker",
}

# names dropped from ``dnn_spring``'s top level -> the subpackage that exports them
TOP_LEVEL = {
    "FuzzinessAccumulator": "dnn_spring.metrics",
    "separation_stats": "dnn_spring.metrics",
    "hessian_top_eigenvalue": "dnn_spring.metrics",
    "hessian_trace": "dnn_spring.metrics",
    "LoadShape": "dnn_spring.metrics",
    "Diagnosis": "dnn_spring.capture",
    "MLP": "dnn_spring.train",
    "CNN": "dnn_spring.train",
    "init_mlp_parameters": "dnn_spring.train",
    "init_cnn_parameters": "dnn_spring.train",
    "Dataset": "dnn_spring.train",
    "SWEEPS": "dnn_spring.sweep",
    "collect": "dnn_spring.sweep",
    "four_panel": "dnn_spring.analysis",
    "curvature_map": "dnn_spring.analysis",
    "trajectory_grid": "dnn_spring.analysis",
    "load_trajectory_records": "dnn_spring.analysis",
    "pick_lazy_active": "dnn_spring.analysis",
    "plot_spring_trajectories": "dnn_spring.analysis",
    "simulate_langevin_batch": "dnn_spring.spring",
    "scan_phase_diagram": "dnn_spring.spring",
}


class _OldPath(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module path and loads its new module in its place."""

    def find_spec(self, fullname, path=None, target=None):
        """A spec for an old path of :data:`MODULES`; None for any other name."""
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        """The default module (replaced in :meth:`exec_module`)."""
        return None

    def exec_module(self, module):
        """Warn, import the new module and put it in the old path's place."""
        new = MODULES[module.__name__]
        warnings.warn(f"{module.__name__} moved to {new}; the old path goes in the next release",
                      DeprecationWarning, stacklevel=2)
        sys.modules[module.__name__] = importlib.import_module(new)


def install() -> None:
    """Put the old-path finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _OldPath) for f in sys.meta_path):
        sys.meta_path.append(_OldPath())
