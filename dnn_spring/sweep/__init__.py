"""Grids of runs: the paper's phase-diagram sweeps, run resumably, locally or on Slurm.

A sweep expands a grid into configs, groups them, splits the groups into
tasks (a pool worker's or a Slurm array task's share), trains what is not
finished yet and writes one record per run; :func:`collect` turns a results
folder into a table.
"""

from dnn_spring._lazy import attach

#: Where a sweep runs: ``"local"`` (a process pool, or this process with one
#: worker), ``"debug"`` (this process) or ``"slurm"`` (a job array).
EXECUTORS = ("local", "debug", "slurm")

__getattr__, __dir__, __all__ = attach(__name__, {
    "SWEEPS": "dnn_spring.sweep._grids",
    "SweepSpec": "dnn_spring.sweep._grids",
    "expand_grid": "dnn_spring.sweep._grids",
    "run_sweep": "dnn_spring.sweep._runner",
    "sweep_status": "dnn_spring.sweep._slurm_status",
    "collect": "dnn_spring.sweep._store",
    "load_table": "dnn_spring.sweep._store",
})
__all__ = ["EXECUTORS", *__all__]
