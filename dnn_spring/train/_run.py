"""One training run, end to end (docs/science.md#training-and-noise).

:func:`train_run` trains one network from a :class:`~dnn_spring.train._config.RunConfig`
and returns its run record (:mod:`dnn_spring.train._record`): a flat,
JSON-serialisable dict holding the full config, the outcome (status, stop
reason, losses, accuracies), the load curve with its shape statistics and,
when asked, Hessian numbers and a load-curve trajectory.

A run goes through the epoch loop of the batched trainer
(:class:`dnn_spring.train._group.GroupLoop`), so a single run and a member of a
batched group follow the same rules.  A lone MLP is trained by the plain
kernels of :class:`~dnn_spring.train._lone_mlp.LoneMLP` (as fast as a plain
PyTorch loop); with ``grouped=True``, and for a CNN, it is a group of one
(:class:`~dnn_spring.train._group_mlp.GroupMLP`,
:class:`~dnn_spring.train._group_cnn.GroupCNN`).  It follows the rules of
:mod:`dnn_spring.train._rules` (seed streams, data noise, epoch order, stopping,
divergence), draws its randomness from :mod:`dnn_spring.train._rng` and steps
with the optimisers of :mod:`dnn_spring.train._optim`.

**Determinism**: on the CPU, the same config gives the same record bit for
bit on a given machine and torch thread count.  With ``grouped=True`` an MLP's
record is also bit for bit that of the same config in any batched group of a
sweep (:mod:`dnn_spring.train._member_ops`); the default lone path agrees with it
to float32 rounding (:mod:`dnn_spring.train._lone_mlp`), and so does a CNN member
of a group with its single run (:mod:`dnn_spring.train._group_cnn`).
Every record stores ``threads``, ``torch_version`` and ``cpu_capability``:
another thread count, torch build or CPU kind (AVX2, AVX-512) may round
differently.  In the reproducible mode (:mod:`dnn_spring.train._reproducible`) the
record is the same on every x86-64 CPU with AVX2, with the same torch build
and thread count.
"""

from __future__ import annotations

from dnn_spring.train._group import _train
from dnn_spring.train._config import RunConfig
from dnn_spring.train._grouping import check_group
from dnn_spring.train._rules import resolve_device

__all__ = ["train_run"]


# --------------------------------------------------------------------------- public


def train_run(config: RunConfig, *, device="cpu", progress: bool = False,
              return_model: bool = False, grouped: bool = False):
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
    grouped : bool, default False
        Train an MLP as a group of one, through the batched kernels, so that its
        record is bit for bit the one the same config gets in any group of a
        sweep (sweeps do this).  False: the plain kernels of a lone run, about
        twice as fast, whose record agrees with the grouped one to float32
        rounding.  A CNN is always trained as a group of one.

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
    records, models = _train(check_group([config]), dev, progress, None, 300.0, True, None,
                             lone=not grouped)
    return (records[0], models[0]) if return_model else records[0]
