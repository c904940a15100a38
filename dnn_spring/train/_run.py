"""One training run, end to end (docs/science.md#training-and-noise).

:func:`train_run` trains one network from a :class:`~dnn_spring.train._config.RunConfig`
and returns its run record (:mod:`dnn_spring.train._record`): a flat,
JSON-serialisable dict holding the full config, the outcome (status, stop
reason, losses, accuracies), the load curve with its shape statistics and,
when asked, Hessian numbers and a load-curve trajectory.

A run is a group of one of the batched trainer
(:func:`dnn_spring.train._group.train_group`; an MLP through
:class:`~dnn_spring.train._group_mlp.GroupMLP`, a CNN through
:class:`~dnn_spring.train._group_cnn.GroupCNN`), so a single run and a member of
a batched group follow the same code.  It follows the rules of
:mod:`dnn_spring.train._rules` (seed streams, data noise, epoch order, stopping,
divergence), draws its randomness from :mod:`dnn_spring.train._rng` and steps
with the optimisers of :mod:`dnn_spring.train._optim`.

**Determinism**: on the CPU, the same config gives the same record bit for
bit on a given machine and torch thread count (an MLP trained alone or in any
batched group: :mod:`dnn_spring.train._member_ops`; a CNN member of a group matches
its single run up to float32 rounding: :mod:`dnn_spring.train._group_cnn`).
Every record stores ``threads``, ``torch_version`` and ``cpu_capability``:
another thread count, torch build or CPU kind (AVX2, AVX-512) may round
differently.  In the reproducible mode (:mod:`dnn_spring.train._reproducible`) the
record is the same on every x86-64 CPU with AVX2, with the same torch build
and thread count.
"""

from __future__ import annotations

from dnn_spring.train._group import train_group
from dnn_spring.train._config import RunConfig
from dnn_spring.train._rules import resolve_device

__all__ = ["train_run"]


# --------------------------------------------------------------------------- public


def train_run(config: RunConfig, *, device="cpu", progress: bool = False,
              return_model: bool = False):
    """Train one network and return its run record.

    Parameters
    ----------
    config : RunConfig
        Model, data, training settings and seed.  Validated on construction.
    device : str or torch.device, default "cpu"
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    progress : bool, default False
        Show a tqdm bar over epochs.
    return_model : bool, default False
        Return ``(record, model)``: the trained network in eval mode, or None
        when the run diverged or failed.

    Returns
    -------
    dict
        The run record (see :mod:`dnn_spring.train._record`): every
        config field, ``key``, ``status`` ("ok", "diverged" or "failed"),
        ``error``, ``stop_reason``, ``epochs_run``, ``train_loss``,
        ``train_acc``, ``test_acc``, ``layers``, ``log_d``, ``log_inv_d``,
        ``log_trace_ratio`` (input → logits), ``v``, ``c``, ``c_rel``,
        ``fit_slope``, ``fit_r2``, ``regime``, ``hessian_top``,
        ``hessian_trace``, ``trajectory``, ``wall_time``, ``device``,
        ``version``.  A diverging run is not an exception: it comes back with
        status "diverged"; an unexpected error inside training gives status
        "failed" with the message in ``error``.

    Raises
    ------
    TypeError, ValueError
        ``config`` is not a RunConfig, or ``device`` is invalid/unavailable.
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"`config` must be a RunConfig, got {type(config).__name__}")
    dev = resolve_device(device)
    records, models = train_group([config], device=dev, progress=progress, return_models=True)
    return (records[0], models[0]) if return_model else records[0]
