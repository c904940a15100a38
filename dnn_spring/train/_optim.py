"""Optimisers on stacked parameters: one update for N independent members.

Every parameter tensor has the member on its first axis, shape (N, ...); each
member has its own learning rate (and Langevin temperature), so a whole row
of the phase diagram steps at once.  A single model passes ``p.detach()[None]``.

* ``adam``: as ``torch.optim.Adam`` (betas 0.9/0.999, eps 1e-8, L2 ``weight_decay``);
* ``sgd``: plain SGD;
* ``sgld``: ``θ ← θ − lr·g + sqrt(2·lr·T)·ξ``;
* ``psgld``: preconditioned SGLD (Li et al. 2016) with the RMSprop
  preconditioner ``G = 1/(λ + sqrt(V))``, ``V ← a·V + (1−a)·g²``, a = 0.99,
  λ = 1e-5, ``θ ← θ − lr·G·g + sqrt(2·lr·T·G)·ξ`` (the small Γ correction
  term dropped, as is usual).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dnn_spring.train import _rng as rng

__all__ = ["GroupOptimizer", "OPTIMIZER_STATE"]

_PSGLD_ALPHA, _PSGLD_LAMBDA = 0.99, 1e-5
_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8
#: Number of state tensors each optimiser keeps per parameter.
OPTIMIZER_STATE = {"adam": 2, "sgd": 0, "sgld": 0, "psgld": 1}


def _runs(values: list) -> list:
    """Maximal runs of equal values: [(start, stop, value), ...]."""
    out = []
    for i, v in enumerate(values):
        if out and out[-1][2] == v:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1, v])
    return [tuple(r) for r in out]


class GroupOptimizer:
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
    keys : Tensor of shape (N,), int64, optional
        Per-member keys of the Langevin stream (:func:`dnn_spring.train._rng.member_keys`),
        needed for SGLD / pSGLD.  The noise of step t (1-based) is
        ``rng.normal(keys, t, sum of a member's parameter sizes)``, split
        over the parameters in order, so it does not depend on the group.
    """

    def __init__(self, name, params, lrs, *, temperatures=None, weight_decay=0.0, keys=None):
        self.name, self.params, self.wd = name, list(params), float(weight_decay)
        self.lrs = [float(v) for v in lrs]
        self.temps = [float(v) for v in (temperatures or [0.0] * len(self.lrs))]
        self.keys = keys
        dev = self.params[0].device
        # steps taken: a Python int, and on the device (read by kernels, so a
        # captured CUDA graph sees it advance): ``counter`` (int64) and the
        # fused Adam's float steps
        self.t = 0
        self.counter = torch.zeros((), dtype=torch.int64, device=dev)
        self._adam_steps = [torch.zeros((), device=dev) for _ in self.params]
        n_state = OPTIMIZER_STATE[name]
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
        self.keys = self.keys.index_select(0, index.to(self.keys.device)) \
            if self.keys is not None else None
        self._refresh()

    def set_steps(self, t: int) -> None:
        """Set the number of steps taken (resuming from a checkpoint)."""
        self.t = int(t)
        self.counter.fill_(self.t)
        for s in self._adam_steps:
            s.fill_(float(self.t))

    def _bcast(self, values: Tensor, like: Tensor) -> Tensor:
        return values.view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self, grads: list) -> None:
        """One update from ``grads`` (same shapes as the parameters)."""
        self.t += 1
        self.counter += 1
        # fused kernels index memory linearly: a transposed gradient would be misread
        grads = [g if g.is_contiguous() else g.contiguous() for g in grads]
        if self.name != "adam" and self.wd:
            grads = torch._foreach_add(grads, self.params, alpha=self.wd)
        getattr(self, f"_{self.name}")(grads)

    def _adam(self, grads):
        m, v = self.state
        if hasattr(torch, "_fused_adam_"):
            # One fused pass per tensor; per-member lr by runs of equal lr.
            torch._foreach_add_(self._adam_steps, 1.0)
            steps = self._adam_steps
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
        if self.keys is None:
            raise ValueError(f"`keys` must be given for the {self.name!r} optimiser")
        flat = rng.normal(self.keys, self.counter, sum(sizes)).to(self.params[0].device)
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
