"""One training run, end to end (SPEC §5).

:func:`train_run` trains one network from a :class:`~dnn_spring.config.RunConfig`
and returns its run record (:mod:`dnn_spring.run_record`): a flat,
JSON-serialisable dict holding the full config, the outcome (status, stop
reason, losses, accuracies), the load curve with its shape statistics and,
when asked, Hessian numbers and a load-curve trajectory.

An MLP run is a group of one of the batched trainer
(:func:`dnn_spring.batched.train_group`), so a single run and a member of a
batched group follow the same code and give the same numbers.  A CNN run
uses the plain loop below.  Both follow the rules of :mod:`dnn_spring.rules`
(seed streams, data noise, epoch order, stopping, divergence) and step with
the optimisers of :mod:`dnn_spring.optim`.

The CNN's ``nn.Dropout`` draws from the global generator inside
``torch.random.fork_rng``, seeded from the run's ``dropout`` stream, so the
caller's random state is untouched.

**Determinism**: on the CPU, the same config gives the same record bit for
bit on a given machine and torch thread count (for an MLP, trained alone or
in any batched group: :mod:`dnn_spring.member_ops`).  Every record stores
``threads``, ``torch_version`` and ``cpu_capability``: another thread count,
torch build or CPU kind (AVX2, AVX-512) may round differently.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .batched import train_group
from .config import RunConfig
from .data import load_dataset
from .models import CNN
from .optim import BatchedOptimizer
from . import streams
from .rules import epochs_above, member_seeds, resolve_device, stop_reason
from .run_record import (curve_log_d, fail_record, finish_or_fail, finite_or_none, new_record,
                         trajectory_tracker)

__all__ = ["train_run", "cnn_epoch"]


# --------------------------------------------------------------------------- CNN loop


def cnn_epoch(model, opt, params, data, cfg, keys, x_std, epoch: int) -> float:
    """One epoch (1-based ``epoch``) of the CNN loop; the epoch's mean training loss."""
    x, y = data.x_train, data.y_train
    batch = cfg.train.batch_size
    full = batch == 0 or batch >= len(x)
    x, y = streams.epoch_samples(x, y, keys, epoch, shuffle=not full, noise=[cfg.train.noise],
                                 x_std=x_std, n_classes=data.n_classes)
    x, y = x[0], y[0]
    step = len(x) if full else batch
    total = 0.0
    for s in range(0, len(x), step):
        loss = F.cross_entropy(model(x[s:s + step]), y[s:s + step])
        grads = torch.autograd.grad(loss, params)
        opt.step([g[None] for g in grads])
        total += float(loss.detach()) * len(x[s:s + step])
    return total / len(x)


def _train_cnn(config: RunConfig, data, device, record: dict, progress: bool):
    """Plain single-model loop (the CNN); returns the trained model."""
    seeds = member_seeds(config.seed)
    keys = streams.member_keys([config.seed], device)
    model = CNN(config.model, data.input_shape, data.n_classes,
                generator=streams.init_generator(config.seed))
    model = model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    t = config.train
    opt = BatchedOptimizer(t.optimizer, [p.detach()[None] for p in params], [t.lr],
                           temperatures=[t.temperature], weight_decay=t.weight_decay,
                           keys=keys["langevin"])
    x_std = float(data.x_train.std())
    previous, reason, above = None, "epochs", 0
    devices = [device] if device.type == "cuda" else []
    tracker = trajectory_tracker(model, data) if t.curve_every else None
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seeds["dropout"])  # nn.Dropout's stream, isolated by fork_rng
        bar = tqdm(range(1, t.epochs + 1), disable=not progress, desc="epochs", leave=False)
        for epoch in bar:
            mean = cnn_epoch(model, opt, params, data, config, keys, x_std, epoch)
            record.update(epochs_run=epoch, train_loss=finite_or_none(mean))
            if t.curve_every and epoch % t.curve_every == 0:
                record["trajectory"].append({"epoch": epoch, "log_d": curve_log_d(model, data, tracker)})
            bar.set_postfix(loss=f"{mean:.4g}")
            above = epochs_above(above, mean, data.n_classes)
            finite = all(bool(torch.isfinite(p).all()) for p in params)
            stop = stop_reason(mean, previous, t, finite=finite, epochs_above=above,
                               last=epoch == t.epochs)
            if stop:
                reason = stop
                break
            previous = mean
    record["stop_reason"] = reason
    if reason == "diverged":
        record["status"] = "diverged"
    return model


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
        The run record (see :mod:`dnn_spring.run_record`): every
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
    if config.model.arch == "mlp":
        records, models = train_group([config], device=dev, progress=progress, return_models=True)
        return (records[0], models[0]) if return_model else records[0]
    start = time.perf_counter()
    record, model = new_record(config, dev), None
    try:
        data = load_dataset(config.data, device=dev, flatten=False)
        model = _train_cnn(config, data, dev, record, progress)
        if record["status"] == "ok":
            finish_or_fail(record, model, data, hessian=config.train.hessian)
    except Exception as exc:  # noqa: BLE001 - a run never kills its caller
        fail_record(record, exc)
    record["wall_time"] = time.perf_counter() - start
    if return_model:
        return record, (model.eval() if model is not None and record["status"] == "ok" else None)
    return record
