"""One training run, end to end (SPEC §5), and the pieces every trainer shares.

:func:`train_run` trains one network from a :class:`~dnn_spring.config.RunConfig`
and returns its run record: a flat, JSON-serialisable dict holding the full
config, the outcome (status, stop reason, losses, accuracies), the load curve
with its shape statistics and, when asked, Hessian numbers and a load-curve
trajectory.

An MLP run is an ensemble of one of the batched trainer
(:func:`dnn_spring.batched.train_group`), so a single run and a member of a
batched group follow the same code.  A CNN run uses the plain loop below with
the same noise and optimiser functions.

Choices where SPEC §5 is silent (documented here once):

* **Label/data noise p** (:func:`add_data_noise`): each sample's label is
  reset, with probability p (Bernoulli per sample, so the fraction is p on
  average), to a class drawn uniformly from all classes (it may hit the true
  one); the input gets Gaussian noise of standard deviation ``p * std(X)``
  where ``std(X)`` is the scalar standard deviation of the whole training
  input.  Draws are fresh for every sample of every epoch, i.e. every step.
* **Randomness**: one ``numpy.random.SeedSequence(seed)`` per run is spawned
  into independent streams for the initialisation, the data order, the noise
  draws, the dropout masks and the Langevin noise (:func:`member_seeds`).
  The global RNG is never seeded; the CNN's ``nn.Dropout`` draws from the
  global generator inside ``torch.random.fork_rng`` so the caller's state is
  untouched.
* **Early stopping** is checked at the end of each epoch on the epoch's mean
  training loss (sample-weighted over its mini-batches): below ``stop_loss``
  → ``stop_reason = "loss"``; changed by less than ``stop_delta`` from the
  previous epoch → ``"plateau"``.  A non-finite epoch loss → ``"diverged"``.
* **Mini-batches**: each epoch visits a fresh permutation of the training
  set in batches of ``batch_size`` (the last one smaller; for the MLP with
  BatchNorm a last batch of a single sample is skipped, as BatchNorm cannot
  train on it).  ``batch_size`` 0 or >= n_train is full batch, in data order.
* **Determinism**: on the CPU, the same config gives the same record bit for
  bit on a given machine and torch thread count, trained alone or in any
  batched group (:mod:`dnn_spring._member_ops`).  Every record stores
  ``threads``, ``torch_version`` and ``cpu_capability``: another thread
  count, torch build or CPU kind (AVX2, AVX-512) may round differently.
* **Divergence** (:func:`stop_reason`): a run is ``diverged`` when its epoch
  loss or any weight becomes non-finite, or when its epoch loss stays above
  ``DIVERGENCE_FACTOR`` (10) × log C, ten times the loss of chance
  prediction, for ``DIVERGENCE_PATIENCE`` (3) epochs in a row, in its last
  epoch or on a plateau.  A diverged run is final: it is never retried.
* **Optimisers**: see :mod:`dnn_spring.optim`.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .config import RunConfig
from .optim import BatchedOptimizer

__all__ = [
    "train_run",
    "add_data_noise",
    "member_seeds",
    "resolve_device",
    "BatchedOptimizer",
]

STREAMS = ("init", "order", "noise", "dropout", "langevin")


def member_seeds(seed: int) -> dict:
    """Independent 64-bit seeds for each random stream of one run.

    Returns ``{stream: int}`` for the streams ``init``, ``order``, ``noise``,
    ``dropout`` and ``langevin``, spawned from ``SeedSequence(seed)``.
    """
    children = np.random.SeedSequence(int(seed)).spawn(len(STREAMS))
    return {name: int(c.generate_state(1, dtype=np.uint64)[0]) for name, c in zip(STREAMS, children)}


def resolve_device(device) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` or a torch.device → torch.device.

    Raises
    ------
    ValueError
        Unknown device name, or CUDA asked for but not available.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"`device` must be 'cpu', 'cuda' or 'auto', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("`device` is 'cuda' but CUDA is not available here; use 'cpu' or 'auto'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"`device` must be 'cpu', 'cuda' or 'auto', got {device!r}")
    return dev


def add_data_noise(x: Tensor, y: Tensor, p: float, *, x_std: float, n_classes: int,
                   generator: torch.Generator) -> tuple:
    """Data/label noise of SPEC §5 on one set of samples.

    Parameters
    ----------
    x : Tensor of shape (n, ...)
        Inputs.
    y : Tensor of shape (n,)
        Integer labels.
    p : float
        Noise level in [0, 1]: probability of resetting a label and relative
        standard deviation of the input noise.
    x_std : float
        ``std(X)`` of the training inputs.
    n_classes : int
    generator : torch.Generator
        Draws, in this order, the label-reset coins, the new labels and the
        input noise.  Nothing is drawn when ``p == 0``.

    Returns
    -------
    x_noisy : Tensor of shape (n, ...)
    y_noisy : Tensor of shape (n,)
    """
    if p == 0:
        return x, y
    dev = generator.device
    reset = torch.rand(y.shape, generator=generator, device=dev).to(y.device) < p
    new = torch.randint(n_classes, y.shape, generator=generator, device=dev).to(y.device)
    xi = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype).to(x.device)
    return x + (p * x_std) * xi, torch.where(reset, new, y)


# --------------------------------------------------------------------------- records


def new_record(config: RunConfig, device) -> dict:
    """A run record with every key present and the outcome fields empty."""
    from . import __version__

    record = config.flat()
    record.update(
        key=config.key(), status="ok", error=None, stop_reason=None, epochs_run=0,
        train_loss=None, train_acc=None, test_acc=None, layers=[], log_d=[], log_inv_d=[],
        log_trace_ratio=[], v=None, c=None, c_rel=None, fit_slope=None, fit_r2=None,
        regime=None, hessian_top=None, hessian_trace=None, trajectory=[], wall_time=0.0,
        device=str(device), version=__version__, threads=torch.get_num_threads(),
        torch_version=torch.__version__, cpu_capability=_cpu_capability(),
    )
    return record


def _cpu_capability() -> str:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def _finite(x) -> "float | None":
    x = float(x)
    return x if math.isfinite(x) else None


@torch.no_grad()
def accuracy(model, x: Tensor, y: Tensor, *, batch_size: int = 4096) -> float:
    """Fraction of ``x`` (shape (n, ...)) the model, in eval mode, labels as ``y``."""
    was = model.training
    model.eval()
    try:
        hits = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                   for i in range(0, len(x), batch_size))
    finally:
        model.train(was)
    return hits / max(len(x), 1)


def curve_log_d(model, data) -> list:
    """log D per load-curve point on the clean training set (eval mode)."""
    from .capture import load_curve

    # Only log D is kept: skip the p×p inverse-fuzziness pass at every recorded epoch.
    frame = load_curve(model, data.x_train, labels=data.y_train, n_classes=data.n_classes,
                       inverse=False)
    return [_finite(v) for v in frame["log_d"]]


def _hessian(model, data, record: dict) -> None:
    from .hessian import hessian_top_eigenvalue, hessian_trace

    was = model.training
    model.eval()
    try:
        params = [p for p in model.parameters() if p.requires_grad]
        loss_fn = lambda: F.cross_entropy(model(data.x_train), data.y_train)  # noqa: E731
        gen = torch.Generator().manual_seed(int(record["seed"]))
        record["hessian_top"] = _finite(hessian_top_eigenvalue(loss_fn, params, generator=gen))
        record["hessian_trace"] = _finite(hessian_trace(loss_fn, params, generator=gen))
    finally:
        model.train(was)


def finish_record(record: dict, model, data, *, hessian: bool) -> dict:
    """Fill accuracies, the load curve, its shape and Hessian numbers from ``model``."""
    from .capture import load_curve
    from .shape import load_shape

    record["train_acc"] = accuracy(model, data.x_train, data.y_train)
    record["test_acc"] = accuracy(model, data.x_test, data.y_test)
    frame = load_curve(model, data.x_train, labels=data.y_train, n_classes=data.n_classes)
    record["layers"] = [str(v) for v in frame["layer"]]
    for column in ("log_d", "log_inv_d", "log_trace_ratio"):
        record[column] = [_finite(v) for v in frame[column]]
    try:
        shape = load_shape(frame)
    except ValueError as exc:  # e.g. a collapsed layer gives log D = inf
        record["error"] = f"no load-curve shape: {exc}"
    else:
        record.update(v=shape.v, c=shape.c, c_rel=shape.c_rel, fit_slope=shape.slope,
                      fit_r2=shape.r2, regime=shape.regime)
    if hessian:
        _hessian(model, data, record)
    return record


def fail_record(record: dict, exc: BaseException) -> dict:
    """Mark ``record`` as failed with a one-line message of ``exc``."""
    text = str(exc).strip().splitlines()
    record.update(status="failed", stop_reason="error",
                  error=f"{type(exc).__name__}: {text[0] if text else ''}")
    return record


@torch.no_grad()
def _blown_up(model, data) -> bool:
    """Does ``model`` give non-finite logits on the training set (eval mode)?"""
    was = model.training
    model.eval()
    try:
        return not bool(torch.isfinite(model(data.x_train)).all())
    finally:
        model.train(was)


def finish_or_fail(record: dict, model, data, *, hessian: bool) -> dict:
    """:func:`finish_record`; an error makes the record "failed", or "diverged"
    when the trained weights overflow the forward pass (a blow-up in the last
    update, whose loss and weights were still finite)."""
    try:
        finish_record(record, model, data, hessian=hessian)
    except Exception as exc:  # noqa: BLE001 - a run never kills its caller
        fail_record(record, exc)
        try:
            if _blown_up(model, data):
                record.update(status="diverged", stop_reason="diverged")
        except Exception:  # noqa: BLE001 - keep "failed"
            pass
    return record


# --------------------------------------------------------------------------- CNN loop


#: A run whose epoch loss stays above this many times the loss of chance
#: prediction, log C, has blown up (see :func:`stop_reason`).
DIVERGENCE_FACTOR = 10.0
#: ... for this many epochs in a row (or in its last epoch).
DIVERGENCE_PATIENCE = 3


def stop_reason(mean: float, previous: "float | None", train, *, finite: bool = True,
                epochs_above: int = 0, last: bool = False) -> "str | None":
    """Per-epoch stopping rule of SPEC §5, with divergence (None: go on).

    ``"diverged"`` when the epoch's mean loss or any weight is non-finite
    (``finite=False``), or when the loss has been above
    ``DIVERGENCE_FACTOR · log C`` for ``epochs_above >= DIVERGENCE_PATIENCE``
    epochs in a row, or still is in the last epoch (``last``), or sits there
    on a plateau.  Otherwise ``"loss"`` below ``stop_loss`` and
    ``"plateau"`` when the loss changed by less than ``stop_delta``.
    """
    if not (math.isfinite(mean) and finite):
        return "diverged"
    plateau = previous is not None and abs(mean - previous) < train.stop_delta
    if epochs_above and (epochs_above >= DIVERGENCE_PATIENCE or last or plateau):
        return "diverged"
    if epochs_above:
        return None
    if mean < train.stop_loss:
        return "loss"
    return "plateau" if plateau else None


def epoch_order(n: int, batch_size: int, generator: torch.Generator, device) -> "Tensor | None":
    """Sample order of one epoch: None for full batch, else a permutation."""
    if batch_size == 0 or batch_size >= n:
        return None
    return torch.randperm(n, generator=generator, device=generator.device).to(device)


def _cnn_epoch(model, opt, params, data, cfg, gens, x_std) -> float:
    x, y = data.x_train, data.y_train
    order = epoch_order(len(x), cfg.train.batch_size, gens["order"], x.device)
    if order is not None:
        x, y = x[order], y[order]
    x, y = add_data_noise(x, y, cfg.train.noise, x_std=x_std, n_classes=data.n_classes,
                          generator=gens["noise"])
    step = len(x) if order is None else cfg.train.batch_size
    total = 0.0
    for s in range(0, len(x), step):
        loss = F.cross_entropy(model(x[s:s + step]), y[s:s + step])
        grads = torch.autograd.grad(loss, params)
        opt.step([g[None] for g in grads])
        total += float(loss.detach()) * len(x[s:s + step])
    return total / len(x)


def _train_cnn(config: RunConfig, data, device, record: dict, progress: bool):
    """Plain single-model loop (the CNN); returns the trained model."""
    from tqdm.auto import tqdm

    from .models import CNN

    seeds = member_seeds(config.seed)
    gens = {k: torch.Generator(device=device).manual_seed(s) for k, s in seeds.items()}
    model = CNN(config.model, data.input_shape, data.n_classes,
                generator=torch.Generator().manual_seed(seeds["init"]))
    model = model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    t = config.train
    opt = BatchedOptimizer(t.optimizer, [p.detach()[None] for p in params], [t.lr],
                           temperatures=[t.temperature], weight_decay=t.weight_decay,
                           generators=[gens["langevin"]])
    x_std = float(data.x_train.std())
    previous, reason, above = None, "epochs", 0
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seeds["dropout"])  # nn.Dropout's stream, isolated by fork_rng
        bar = tqdm(range(1, t.epochs + 1), disable=not progress, desc="epochs", leave=False)
        for epoch in bar:
            mean = _cnn_epoch(model, opt, params, data, config, gens, x_std)
            record.update(epochs_run=epoch, train_loss=_finite(mean))
            if t.curve_every and epoch % t.curve_every == 0:
                record["trajectory"].append({"epoch": epoch, "log_d": curve_log_d(model, data)})
            bar.set_postfix(loss=f"{mean:.4g}")
            above = above + 1 if mean > DIVERGENCE_FACTOR * math.log(data.n_classes) else 0
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


def train_run(config: RunConfig, *, device="cpu", progress: bool = False) -> dict:
    """Train one network and return its run record.

    Parameters
    ----------
    config : RunConfig
        Model, data, training settings and seed.  Validated on construction.
    device : str or torch.device, default "cpu"
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    progress : bool, default False
        Show a tqdm bar over epochs.

    Returns
    -------
    dict
        The run record (see the module docstring and ``COMMON.md``): every
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
        from .batched import train_group

        return train_group([config], device=dev, progress=progress)[0]
    start = time.perf_counter()
    record = new_record(config, dev)
    try:
        from .data import load_dataset

        data = load_dataset(config.data, device=dev, flatten=False)
        model = _train_cnn(config, data, dev, record, progress)
        if record["status"] == "ok":
            finish_or_fail(record, model, data, hessian=config.train.hessian)
    except Exception as exc:  # noqa: BLE001 - a run never kills its caller
        fail_record(record, exc)
    record["wall_time"] = time.perf_counter() - start
    return record
