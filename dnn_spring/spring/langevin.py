"""The second-order (Langevin) spring–block chain with kinetic friction.

Three separate pieces, as in torchsde:

* the problem — :func:`langevin_drift` (acceleration) and
  :func:`noise_amplitude` (``ε e^{−λt}``), shared by every backend;
* the noise — :class:`~dnn_spring.spring.noise.GaussianIncrements`, seeded;
* the solver — :func:`euler_maruyama_step`, a few lines.

Backends (:data:`BACKENDS`): ``"numpy"`` and ``"torch"`` integrate a whole batch
of chains ``(B, L)`` at once with Euler–Maruyama (torch on any device);
``"sdeint"`` is the reference, one :mod:`sdeint` call per chain with
``itoint`` (SRI2) or ``itoEuler`` (:data:`SDEINT_METHODS`).  With the same
integer seed the numpy backend draws exactly the Wiener increments that
``sdeint.itoEuler`` draws, so the two agree path by path.
"""

from __future__ import annotations

import numpy as np

from dnn_spring._checks import check_choice
from dnn_spring.spring._common import check_batch, check_memory, column, record_steps, stretch
from dnn_spring.spring.config import LangevinConfig
from dnn_spring.spring.noise import GaussianIncrements, resolve_generators, torch_seed
from dnn_spring.spring.result import ChainBatchResult, ChainResult

__all__ = [
    "BACKENDS",
    "SDEINT_METHODS",
    "langevin_drift",
    "noise_amplitude",
    "euler_maruyama_step",
    "simulate_langevin",
    "simulate_langevin_batch",
]

#: Integrators of the second-order chain.
BACKENDS = ("numpy", "torch", "sdeint")
#: sdeint routines usable by the ``"sdeint"`` backend.
SDEINT_METHODS = ("itoint", "itoEuler")

_DRIFT_PARAMS = ("k", "mass", "gamma", "y", "mu_right", "mu_left")
_NOISE_PARAMS = ("noise", "decay")
_PARAMS = _DRIFT_PARAMS + _NOISE_PARAMS
_SAME = ("n_blocks", "dt", "t_max", "noise_mode")


def langevin_drift(x, v, *, k, mass, gamma, y, mu_right, mu_left):
    """Acceleration ``(k/m) Δ + f(v) − (γ/m) v`` of every block.

    Parameters
    ----------
    x, v : array of shape (B, L) (numpy or torch)
        Positions and velocities.
    k, mass, gamma, y, mu_right, mu_left : float or array of shape (B, 1)

    Returns
    -------
    array of shape (B, L)
    """
    friction = mu_left * (v < 0) - mu_right * (v > 0)
    return (k / mass) * stretch(x, y) + friction - (gamma / mass) * v


def noise_amplitude(t, *, noise, decay):
    """Diffusion amplitude ``ε e^{−λ t}`` at time ``t``, shape like ``noise``."""
    arg = -decay * t
    return noise * (arg.exp() if hasattr(arg, "exp") else np.exp(arg))


def euler_maruyama_step(x, v, t, dw, h, params):
    """One Euler–Maruyama step of the chain (itoEuler's update, batched).

    Parameters
    ----------
    x, v : array of shape (B, L)
    t : float
        Time at the start of the step.
    dw : array of shape (B, 1) (shared noise) or (B, L) (per block)
        Wiener increments of this step.
    h : float
        Step size.
    params : dict of float or arrays of shape (B, 1)
        ``k``, ``mass``, ``gamma``, ``y``, ``mu_right``, ``mu_left``, ``noise``
        (ε) and ``decay`` (λ).

    Returns
    -------
    (x, v) after the step.
    """
    a = langevin_drift(x, v, **{name: params[name] for name in _DRIFT_PARAMS})
    sigma = noise_amplitude(t, noise=params["noise"], decay=params["decay"])
    return x + v * h, v + a * h + sigma * dw


def _time_grid(config: LangevinConfig):
    # sdeint derives its step from tspan; use the same h everywhere.
    n = config.n_steps
    tspan = np.arange(n + 1) * config.dt
    return tspan, (tspan[-1] - tspan[0]) / n


def _run_fast(configs, noise, steps, xp=np, **tensor_kw):
    # The update of euler_maruyama_step, written with preallocated buffers and
    # the noise pre-multiplied by ε e^{−λt} a chunk at a time: ~15 array calls
    # a step, which is what bounds the speed for a batch of a few hundred
    # chains.  Works on numpy arrays and, with xp=torch, on tensors.
    first = configs[0]
    n, n_blocks = len(configs), first.n_blocks
    tspan, h = _time_grid(first)
    p = {name: column(configs, name, xp, **tensor_kw) for name in _PARAMS}
    k_m, g_m = p["k"] / p["mass"], p["gamma"] / p["mass"]
    new = (lambda *shape: np.zeros(shape)) if xp is np else \
        (lambda *shape: xp.zeros(shape, **tensor_kw))
    padded = new(n, n_blocks + 2)  # wall, blocks, pulled end
    padded[:, -1:] = p["y"]
    x, v = padded[:, 1:-1], new(n, n_blocks)
    ext, lap, acc, tmp = new(n, n_blocks + 1), new(n, n_blocks), new(n, n_blocks), new(n, n_blocks)
    traj = new(n, steps.size, n_blocks)
    slot = 1
    for start, block in noise.chunks(first.n_steps):
        t = tspan[start:start + len(block)][:, None, None]
        t = t if xp is np else xp.as_tensor(t, **tensor_kw)
        kicks = p["noise"][None] * xp.exp(-p["decay"][None] * t) * block
        for i, kick in enumerate(kicks, start=start + 1):
            xp.subtract(padded[:, 1:], padded[:, :-1], out=ext)
            xp.subtract(ext[:, 1:], ext[:, :-1], out=lap)
            xp.multiply(lap, k_m, out=acc)
            friction = xp.where(v > 0, p["mu_right"], p["mu_left"])
            friction *= xp.sign(v)
            acc -= friction
            xp.multiply(v, g_m, out=tmp)
            acc -= tmp
            xp.multiply(v, h, out=tmp)
            x += tmp
            acc *= h
            v += acc
            v += kick
            if slot < steps.size and i == steps[slot]:
                traj[:, slot] = x
                slot += 1
    if xp is not np:
        return tuple(a.cpu().numpy() for a in (traj, x, v))
    return traj, x.copy(), v


def _run_sdeint(config, generator, steps, method):
    import sdeint

    tspan, _ = _time_grid(config)
    n_blocks = config.n_blocks
    drift = {name: np.array([[float(getattr(config, name))]]) for name in _DRIFT_PARAMS}
    noise, decay = (np.array([[float(getattr(config, name))]]) for name in _NOISE_PARAMS)
    width = 1 if config.noise_mode == "shared" else n_blocks
    rows = np.zeros((2 * n_blocks, width))

    def f(state, t):
        x, v = state[None, :n_blocks], state[None, n_blocks:]
        return np.concatenate([v[0], langevin_drift(x, v, **drift)[0]])

    def g(state, t):
        diffusion = rows.copy()
        # shared: one column of ones (ε·1·1ᵀ with one increment); per block: diagonal
        diffusion[n_blocks:] = np.eye(n_blocks)[:, :width] if width > 1 else 1.0
        return diffusion * noise_amplitude(t, noise=noise, decay=decay)[0, 0]

    solver = getattr(sdeint, method)
    path = solver(f, g, np.zeros(2 * n_blocks), tspan, generator=generator)
    return path[steps, :n_blocks], path[-1, :n_blocks], path[-1, n_blocks:]


def simulate_langevin_batch(configs, *, backend="numpy", seed=None, record_every=None,
                            method="itoint", device=None) -> ChainBatchResult:
    """Integrate a batch of second-order chains.

    Parameters
    ----------
    configs : LangevinConfig or sequence of LangevinConfig, length B
        They must agree on ``n_blocks``, ``dt``, ``t_max`` and ``noise_mode``;
        the other fields may differ per chain (a parameter grid × seeds).
    backend : {"numpy", "torch", "sdeint"}, default="numpy"
        Vectorised Euler–Maruyama in numpy or torch, or one sdeint call per
        chain.
    seed : None, int, sequence of B ints or numpy.random.Generator
        numpy and sdeint: one numpy stream per chain (see
        ``resolve_generators`` in :mod:`dnn_spring.spring.noise`); a chain seeded
        with ``s`` gets the increments sdeint draws from ``default_rng(s)``.
        torch: one :class:`torch.Generator` for the batch, seeded from ``seed``.
    record_every : int, optional
        Record positions every this many steps; default ``n_steps // 1000``.
    method : {"itoint", "itoEuler"}, default="itoint"
        sdeint routine (sdeint backend only).
    device : str or torch.device, optional
        torch backend only; default CPU.

    Returns
    -------
    ChainBatchResult
        ``trajectory`` of shape (B, n_records, L), times ``step · dt``.

    Raises
    ------
    ValueError
        Also when the arrays would exceed ``MAX_BYTES`` (4 GiB; e.g. ``dt``
        1e-7 over ``t_max`` 700 is 7·10⁹ steps): the message gives the size
        and what to change.
    """
    check_choice("backend", backend, BACKENDS)
    check_choice("method", method, SDEINT_METHODS)
    configs = check_batch(configs, LangevinConfig, _SAME)
    first = configs[0]
    n, n_steps = len(configs), first.n_steps
    width = first.n_blocks if first.noise_mode == "per_block" else 1
    # Held for every step: the time grid; with sdeint also its path (2L) and increments.
    per_step = 1 + (2 * first.n_blocks + 2 * width if backend == "sdeint" else 0)
    check_memory(n, first.n_blocks, n_steps, record_every, per_step=per_step,
                 steps_fix="a larger `dt` or a smaller `t_max`: n_steps = t_max / dt")
    steps = record_steps(n_steps, record_every)
    _, h = _time_grid(first)
    if backend == "torch":
        import torch

        kw = {"device": torch.device(device or "cpu"), "dtype": torch.float64}
        gen = torch.Generator(device=kw["device"]).manual_seed(torch_seed(seed))
        noise = GaussianIncrements(gen, width, np.sqrt(h), n_chains=n, **kw)
        traj, x, v = _run_fast(configs, noise, steps, torch, **kw)
        seeds = (f"torch:{gen.initial_seed()}",) * n
    else:
        gens, seeds = resolve_generators(seed, n)
        if backend == "numpy":
            noise = GaussianIncrements(gens, width, np.sqrt(h))
            traj, x, v = _run_fast(configs, noise, steps)
        else:
            runs = [_run_sdeint(c, g, steps, method) for c, g in zip(configs, gens)]
            traj, x, v = (np.stack(parts) for parts in zip(*runs))
        seeds = tuple(seeds)
    name = f"sdeint.{method}" if backend == "sdeint" else backend
    return ChainBatchResult(configs=configs, seeds=tuple(seeds), backend=name,
                            times=steps * h, trajectory=np.asarray(traj),
                            final=np.asarray(x), velocity=np.asarray(v))


def simulate_langevin(config: LangevinConfig = None, *, backend="numpy", seed=None,
                      record_every=None, method="itoint", device=None) -> ChainResult:
    """Integrate one second-order chain (docs/science.md#chains, reference defaults).

    Parameters
    ----------
    config : LangevinConfig, optional
        Defaults to ``LangevinConfig()`` (L=7, m=1, γ=1, k=0.1, ε=0.003,
        λ=0.001, dt=0.05, t_max=700, μ→=0.003, μ←=0.004, shared noise).
    backend, seed, record_every, method, device
        As in :func:`simulate_langevin_batch`.

    Returns
    -------
    ChainResult
    """
    config = LangevinConfig() if config is None else config
    batch = simulate_langevin_batch([config], backend=backend, seed=seed,
                                    record_every=record_every, method=method, device=device)
    return batch[0]
