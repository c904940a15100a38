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
* **Determinism**: the same config gives identical records on the CPU for a
  fixed number of torch threads (the thread count changes summation order).
* **Optimisers** (:class:`BatchedOptimizer`): Adam as ``torch.optim.Adam``
  (betas 0.9/0.999, eps 1e-8, L2 ``weight_decay``); SGD; SGLD
  ``θ ← θ − lr·g + sqrt(2·lr·T)·ξ``; preconditioned SGLD (Li et al. 2016)
  with the RMSprop preconditioner ``G = 1/(λ + sqrt(V))``, ``V ← a·V + (1−a)·g²``,
  a = 0.99, λ = 1e-5, ``θ ← θ − lr·G·g + sqrt(2·lr·T·G)·ξ`` (the small Γ
  correction term dropped, as is usual).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .config import RunConfig

__all__ = [
    "train_run",
    "add_data_noise",
    "member_seeds",
    "resolve_device",
    "BatchedOptimizer",
]

STREAMS = ("init", "order", "noise", "dropout", "langevin")
_PSGLD_ALPHA, _PSGLD_LAMBDA = 0.99, 1e-5
_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8


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


def _runs(values: list) -> list:
    """Maximal runs of equal values: [(start, stop, value), ...]."""
    out = []
    for i, v in enumerate(values):
        if out and out[-1][2] == v:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1, v])
    return [tuple(r) for r in out]


class BatchedOptimizer:
    """Adam / SGD / SGLD / pSGLD on tensors whose first axis is the member.

    Parameters
    ----------
    name : {"adam", "sgd", "sgld", "psgld"}
    params : list of Tensor of shape (N, ...)
        Updated in place (a single model passes ``p.detach()[None]`` views).
    lrs, temperatures : sequence of float of length N
        Per-member learning rate and Langevin temperature.
    weight_decay : float
        L2 penalty added to the gradient (as ``torch.optim``).
    generators : list of torch.Generator of length N, optional
        Per-member Langevin noise streams (needed for SGLD / pSGLD).
    """

    def __init__(self, name, params, lrs, *, temperatures=None, weight_decay=0.0, generators=None):
        self.name, self.params, self.wd = name, list(params), float(weight_decay)
        self.lrs = [float(v) for v in lrs]
        self.temps = [float(v) for v in (temperatures or [0.0] * len(self.lrs))]
        self.gens = list(generators or [])
        self.t = 0
        n_state = {"adam": 2, "sgd": 0, "sgld": 0, "psgld": 1}[name]
        self.state = [[torch.zeros_like(p) for p in self.params] for _ in range(n_state)]
        self._refresh()

    def _refresh(self):
        self.segments = _runs(self.lrs)
        dev = self.params[0].device
        self.lr_t = torch.tensor(self.lrs, device=dev)
        self.noise_t = torch.tensor([math.sqrt(2 * a * b) for a, b in zip(self.lrs, self.temps)],
                                    device=dev)

    def keep(self, params, idx: list) -> None:
        """Keep only the members at positions ``idx`` (their new parameters ``params``)."""
        index = torch.tensor(idx, device=params[0].device, dtype=torch.long)
        self.params = list(params)
        self.state = [[s.index_select(0, index) for s in group] for group in self.state]
        self.lrs = [self.lrs[i] for i in idx]
        self.temps = [self.temps[i] for i in idx]
        self.gens = [self.gens[i] for i in idx] if self.gens else []
        self._refresh()

    def _bcast(self, values: Tensor, like: Tensor) -> Tensor:
        return values.view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self, grads: list) -> None:
        """One update from ``grads`` (same shapes as the parameters)."""
        self.t += 1
        # fused kernels index memory linearly: a transposed gradient would be misread
        grads = [g if g.is_contiguous() else g.contiguous() for g in grads]
        if self.name != "adam" and self.wd:
            grads = torch._foreach_add(grads, self.params, alpha=self.wd)
        getattr(self, f"_{self.name}")(grads)

    def _adam(self, grads):
        m, v = self.state
        if hasattr(torch, "_fused_adam_"):
            # One fused pass per tensor; per-member lr by runs of equal lr.
            steps = [torch.tensor(float(self.t), device=p.device) for p in self.params]
            for a, b, lr in self.segments:
                cut = lambda ts: [t[a:b] for t in ts]  # noqa: E731
                torch._fused_adam_(cut(self.params), cut(grads), cut(m), cut(v), [], steps,
                                   lr=lr, beta1=_BETA1, beta2=_BETA2, weight_decay=self.wd,
                                   eps=_ADAM_EPS, amsgrad=False, maximize=False)
            return
        if self.wd:
            grads = torch._foreach_add(grads, self.params, alpha=self.wd)
        torch._foreach_lerp_(m, grads, 1 - _BETA1)
        torch._foreach_mul_(v, _BETA2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - _BETA2)
        bc1, bc2 = 1 - _BETA1**self.t, 1 - _BETA2**self.t
        for p, mi, vi in zip(self.params, m, v):
            denom = (vi.sqrt() / math.sqrt(bc2)).add_(_ADAM_EPS)
            p.addcdiv_(mi * self._bcast(self.lr_t / bc1, p), denom, value=-1.0)

    def _sgd(self, grads):
        for a, b, lr in self.segments:
            torch._foreach_add_([p[a:b] for p in self.params], [g[a:b] for g in grads], alpha=-lr)

    def _langevin_noise(self) -> list:
        """Standard normal noise per member from its own stream, split per tensor."""
        sizes = [p[0].numel() for p in self.params]
        flat = torch.stack([torch.randn(sum(sizes), generator=g, device=g.device)
                            for g in self.gens]).to(self.params[0].device)
        return [c.reshape(p.shape) for c, p in zip(flat.split(sizes, dim=1), self.params)]

    def _sgld(self, grads):
        self._sgd(grads)
        for p, xi in zip(self.params, self._langevin_noise()):
            p.addcmul_(xi, self._bcast(self.noise_t, p))

    def _psgld(self, grads):
        (vs,) = self.state
        for p, g, v, xi in zip(self.params, grads, vs, self._langevin_noise()):
            v.mul_(_PSGLD_ALPHA).addcmul_(g, g, value=1 - _PSGLD_ALPHA)
            precond = 1.0 / (v.sqrt() + _PSGLD_LAMBDA)
            p.addcmul_(precond * g, self._bcast(-self.lr_t, p))
            p.addcmul_(xi * precond.sqrt(), self._bcast(self.noise_t, p))


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
        device=str(device), version=__version__,
    )
    return record


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

    frame = load_curve(model, data.x_train, labels=data.y_train, n_classes=data.n_classes)
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


# --------------------------------------------------------------------------- CNN loop


def _stop_reason(mean: float, previous: "float | None", train) -> "str | None":
    """Per-epoch stopping rule of SPEC §5 (None: go on)."""
    if not math.isfinite(mean):
        return "diverged"
    if mean < train.stop_loss:
        return "loss"
    if previous is not None and abs(mean - previous) < train.stop_delta:
        return "plateau"
    return None


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
    previous, reason = None, "epochs"
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
            stop = _stop_reason(mean, previous, t)
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
            finish_record(record, model, data, hessian=config.train.hessian)
    except Exception as exc:  # noqa: BLE001 - a run never kills its caller
        fail_record(record, exc)
    record["wall_time"] = time.perf_counter() - start
    return record
