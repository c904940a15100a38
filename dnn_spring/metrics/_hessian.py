"""Curvature of the training loss from Hessian-vector products.

Both estimators need only products H v, computed by double backward
(Pearlmutter's trick): with g = dL/dθ built with ``create_graph=True``,
H v = d(g·v)/dθ.  The gradient graph is built once per call and reused for
every product, so the cost is one backward pass per product.

The loss is given as a closure ``loss_fn() -> scalar tensor`` so the caller
decides the batch (usually the full training set) and the model mode (eval
mode makes BatchNorm use its running statistics, so the loss is a fixed
function of the weights).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from dnn_spring._checks import range_problem, require

__all__ = ["hessian_top_eigenvalue", "hessian_trace"]


def _prepare(loss_fn: Callable[[], Tensor], params) -> tuple:
    params = [p for p in params]
    if not params:
        raise ValueError("`params` must contain at least one tensor, got none")
    if not all(isinstance(p, Tensor) and p.requires_grad for p in params):
        raise ValueError("`params` must be tensors with requires_grad=True")
    loss = loss_fn()
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError("`loss_fn` must return a scalar tensor")
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    used = [(p, g) for p, g in zip(params, grads) if g is not None and g.requires_grad]
    return [p for p, _ in used], [g for _, g in used]


def _hvp(params: list, grads: list, vec: list) -> list:
    out = torch.autograd.grad(grads, params, grad_outputs=vec, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if h is None else h for p, h in zip(params, out)]


def _dot(a: list, b: list) -> Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def _normalize(vec: list) -> list:
    norm = torch.sqrt(_dot(vec, vec))
    return [v / norm for v in vec]


def _gen(generator) -> torch.Generator:
    if generator is None:
        return torch.Generator().manual_seed(0)
    if not isinstance(generator, torch.Generator):
        kind = type(generator).__name__
        raise TypeError(f"`generator` must be a torch.Generator, got {kind}")
    return generator


def _randn_like(params: list, generator: torch.Generator) -> list:
    return [
        torch.randn(p.shape, generator=generator, device=generator.device, dtype=p.dtype)
        .to(p.device)
        for p in params
    ]


def _power(params, grads, start, shift: float, iters: int, tol: float) -> float:
    """Dominant eigenvalue of (H - shift I) by power iteration (Rayleigh quotient)."""
    vec = _normalize(start)
    value = None
    for _ in range(iters):
        hv = _hvp(params, grads, vec)
        if shift:
            hv = [h - shift * v for h, v in zip(hv, vec)]
        new = float(_dot(vec, hv))
        if float(_dot(hv, hv)) == 0.0:  # v in the null space: H v = 0
            return new
        vec = _normalize([h.detach() for h in hv])
        if value is not None and abs(new - value) <= tol * max(abs(new), 1e-12):
            return new
        value = new
    return value


def hessian_top_eigenvalue(
    loss_fn: Callable[[], Tensor],
    params: Sequence[Tensor],
    *,
    iters: int = 50,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
) -> float:
    """Largest eigenvalue λ_max of the Hessian of ``loss_fn`` w.r.t. ``params``.

    Power iteration from a Gaussian start vector: v ← Hv/‖Hv‖, estimate
    λ = vᵀHv, stopped when λ changes by less than ``tol`` relative.  Power
    iteration finds the eigenvalue of largest magnitude; if that one is
    negative, a second iteration on H - λ I recovers the largest (algebraic)
    eigenvalue.

    Parameters
    ----------
    loss_fn : callable () -> Tensor
        Returns the scalar loss; called once.
    params : sequence of Tensor
        Tensors with ``requires_grad=True`` (e.g. ``model.parameters()``).
    iters : int, default 50
        Maximum number of Hessian-vector products per power iteration.
    tol : float, default 1e-4
        Relative change of λ at which to stop.
    generator : torch.Generator, optional
        Draws the start vector (default: a generator seeded with 0).

    Returns
    -------
    float
    """
    require(range_problem("iters", iters, 1))
    require(range_problem("tol", tol, 0))
    gen = _gen(generator)
    params, grads = _prepare(loss_fn, params)
    if not params:
        return 0.0
    top = _power(params, grads, _randn_like(params, gen), 0.0, iters, tol)
    if top < 0:
        top += _power(params, grads, _randn_like(params, gen), top, iters, tol)
    return float(top)


def hessian_trace(
    loss_fn: Callable[[], Tensor],
    params: Sequence[Tensor],
    *,
    samples: int = 50,
    generator: torch.Generator | None = None,
) -> float:
    """Trace of the Hessian by Hutchinson's estimator, Tr H ≈ mean_k z_kᵀ H z_k.

    The z_k have independent Rademacher (±1) entries.  The estimate is
    unbiased with variance 2 (‖H‖_F² − Σ_i H_ii²) / ``samples``; it is exact
    for a diagonal Hessian.

    Parameters
    ----------
    loss_fn : callable () -> Tensor
        Returns the scalar loss; called once.
    params : sequence of Tensor
        Tensors with ``requires_grad=True``.
    samples : int, default 50
        Number of probe vectors (one Hessian-vector product each).
    generator : torch.Generator, optional
        Draws the probe vectors (default: a generator seeded with 0).

    Returns
    -------
    float
    """
    require(range_problem("samples", samples, 1))
    gen = _gen(generator)
    params, grads = _prepare(loss_fn, params)
    if not params:
        return 0.0
    total = 0.0
    for _ in range(samples):
        z = [
            (torch.randint(0, 2, p.shape, generator=gen, device=gen.device) * 2 - 1)
            .to(device=p.device, dtype=p.dtype)
            for p in params
        ]
        total += float(_dot(z, _hvp(params, grads, z)))
    return total / samples
