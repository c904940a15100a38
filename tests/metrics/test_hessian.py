"""Hessian estimators against the exact Hessian from torch.autograd.functional.hessian."""

import math

import pytest
import torch
from torch import nn

from dnn_spring.metrics._hessian import hessian_top_eigenvalue, hessian_trace


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _quadratic(matrix):
    """Loss 0.5 θᵀAθ + bᵀθ (Hessian A) as a closure over a single parameter."""
    theta = torch.randn(matrix.shape[0], generator=_gen(9), dtype=matrix.dtype).requires_grad_()
    b = torch.ones(matrix.shape[0], dtype=matrix.dtype)
    return (lambda: 0.5 * theta @ matrix @ theta + b @ theta), [theta]


def _spd_matrix(n, seed=0):
    # eigenvalues 1..n spread so power iteration converges quickly (gap n / (n - 1))
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=_gen(seed), dtype=torch.float64))
    return q @ torch.diag(torch.linspace(1.0, 10.0, n, dtype=torch.float64) ** 2) @ q.T


def _tiny_mlp_problem():
    """A tiny tanh MLP and its loss, plus the exact Hessian over the flat parameter vector."""
    gen = _gen(1)
    x = torch.randn(32, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (32,), generator=gen)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    params = list(model.parameters())
    shapes = [p.shape for p in params]

    def loss_fn():
        return nn.functional.cross_entropy(model(x), y)

    def loss_flat(flat):
        chunks = torch.split(flat, [math.prod(s) for s in shapes])
        names = [name for name, _ in model.named_parameters()]
        weights = {name: c.view(s) for name, c, s in zip(names, chunks, shapes)}
        return nn.functional.cross_entropy(torch.func.functional_call(model, weights, (x,)), y)

    flat = torch.cat([p.detach().reshape(-1) for p in params])
    exact = torch.autograd.functional.hessian(loss_flat, flat)
    return loss_fn, params, exact


def test_top_eigenvalue_quadratic():
    matrix = _spd_matrix(20)
    loss_fn, params = _quadratic(matrix)
    top = hessian_top_eigenvalue(loss_fn, params, iters=500, tol=1e-10, generator=_gen())
    exact = torch.linalg.eigvalsh(matrix).max().item()
    assert abs(top - exact) / exact < 1e-3


def test_top_eigenvalue_tiny_mlp():
    loss_fn, params, exact = _tiny_mlp_problem()
    eigenvalues = torch.linalg.eigvalsh(exact)
    top = hessian_top_eigenvalue(loss_fn, params, iters=1000, tol=1e-12, generator=_gen())
    assert eigenvalues.max() > eigenvalues.min().abs()  # the dominant one is the largest
    assert abs(top - eigenvalues.max().item()) / eigenvalues.max().item() < 1e-3


def test_top_eigenvalue_when_dominant_is_negative():
    # spectrum {-10, 1, 2, 3}: power iteration alone would return -10
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=_gen(3), dtype=torch.float64))
    matrix = q @ torch.diag(torch.tensor([-10.0, 1.0, 2.0, 3.0], dtype=torch.float64)) @ q.T
    loss_fn, params = _quadratic(matrix)
    top = hessian_top_eigenvalue(loss_fn, params, iters=2000, tol=1e-12, generator=_gen())
    assert top == pytest.approx(3.0, rel=1e-3)


def test_trace_exact_for_diagonal_hessian():
    # Rademacher z: zᵀ D z = Tr D for every z, so a single sample is exact.
    diag = torch.linspace(-1.0, 5.0, 30, dtype=torch.float64)
    loss_fn, params = _quadratic(torch.diag(diag))
    trace = hessian_trace(loss_fn, params, samples=3, generator=_gen())
    assert trace == pytest.approx(diag.sum().item(), rel=1e-12)


def test_trace_tiny_mlp_within_statistical_tolerance():
    loss_fn, params, exact = _tiny_mlp_problem()
    samples = 400
    estimate = hessian_trace(loss_fn, params, samples=samples, generator=_gen())
    # Var(zᵀHz) = 2 (‖H‖_F² − Σ H_ii²) for Rademacher z; allow 4 standard errors.
    variance = 2 * ((exact**2).sum() - (exact.diagonal() ** 2).sum()).item()
    tolerance = 4 * math.sqrt(variance / samples)
    assert abs(estimate - exact.trace().item()) < tolerance
    assert tolerance < 0.5 * abs(exact.trace().item())  # the check is not vacuous


def test_seeded_and_multiple_params():
    loss_fn, params, _ = _tiny_mlp_problem()
    a = hessian_trace(loss_fn, params, samples=5, generator=_gen(4))
    b = hessian_trace(loss_fn, params, samples=5, generator=_gen(4))
    c = hessian_trace(loss_fn, params, samples=5, generator=_gen(5))
    assert a == b and a != c
    e1 = hessian_top_eigenvalue(loss_fn, params, iters=3, generator=_gen(4))
    e2 = hessian_top_eigenvalue(loss_fn, params, iters=3, generator=_gen(4))
    assert e1 == e2


def test_global_rng_untouched_and_grads_clean():
    loss_fn, params, _ = _tiny_mlp_problem()
    before = torch.get_rng_state()
    hessian_trace(loss_fn, params, samples=2)
    hessian_top_eigenvalue(loss_fn, params, iters=2)
    assert torch.equal(before, torch.get_rng_state())
    assert all(p.grad is None for p in params)


def test_errors():
    loss_fn, params = _quadratic(torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="`samples` must be >= 1, got 0"):
        hessian_trace(loss_fn, params, samples=0)
    with pytest.raises(ValueError, match="`iters` must be >= 1"):
        hessian_top_eigenvalue(loss_fn, params, iters=0)
    with pytest.raises(ValueError, match="requires_grad"):
        hessian_trace(loss_fn, [torch.zeros(3)])
    with pytest.raises(ValueError, match="scalar"):
        hessian_trace(lambda: params[0] * 2, params)
