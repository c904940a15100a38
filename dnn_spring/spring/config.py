"""Frozen configurations of the two spring–block chains (docs/science.md#chains).

Both chains have blocks ``ℓ = 1..L`` at positions ``x_ℓ`` (all start at 0), a
wall at ``x_0 = 0`` and the right end held at ``x_{L+1} = y``.  The defaults are
the reference settings of docs/science.md#chains.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from dnn_spring._checks import choice_problem, raise_all, range_problem

__all__ = [
    "FirstOrderConfig",
    "LangevinConfig",
    "NOISE_MODES",
]

#: How the blocks share the noise: ``"shared"`` drives every block with one
#: increment per step; ``"per_block"`` gives each block its own.
NOISE_MODES = ("shared", "per_block")


def _check_number(name: str, value, *, lo=None, lo_open=False, integer=False) -> str | None:
    kind = "an integer" if integer else "a real number"
    ok_type = isinstance(value, numbers.Integral if integer else numbers.Real)
    if isinstance(value, bool) or not ok_type or not math.isfinite(value):
        return f"`{name}` must be {kind}, got {value!r}"
    return range_problem(name, value, lo, lo_open=lo_open)


def _validate(config, rules) -> None:
    # One error lists every invalid field at once (submitit style).
    raise_all(rule(config) for rule in rules)


def _common_rules():
    return [
        lambda c: _check_number("n_blocks", c.n_blocks, lo=2, integer=True),
        lambda c: _check_number("k", c.k, lo=0, lo_open=True),
        lambda c: _check_number("y", c.y),
        lambda c: _check_number("noise", c.noise, lo=0),
        lambda c: _check_number("mu_right", c.mu_right, lo=0),
        lambda c: _check_number("mu_left", c.mu_left, lo=0),
        lambda c: choice_problem("noise_mode", c.noise_mode, NOISE_MODES),
    ]


class _ConfigMixin:
    def replace(self, **changes):
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """Return the fields as a plain, JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @property
    def order(self) -> int:
        return self._ORDER


@dataclass(frozen=True)
class FirstOrderConfig(_ConfigMixin):
    """The overdamped chain iterated with static friction (docs/science.md#chains).

    Every step, for every block ``ℓ`` at once (a synchronous update)::

        G   = F_ℓ + noise · ξ                 ξ ~ N(0, 1)
        μ   = mu_left if G < 0 else mu_right
        x_ℓ ← x_ℓ + eta · sign(G) · max(|G| − μ, 0)

    with the spring force ``F_ℓ = k [(x_{ℓ+1} − x_ℓ) − (x_ℓ − x_{ℓ−1})]``.

    Attributes
    ----------
    n_blocks : int, default=7
        Number of blocks L (at least 2).
    k : float, default=1.0
        Spring constant, > 0.
    y : float, default=1.0
        Position of the pulled end ``x_{L+1}``.
    eta : float, default=0.01
        Time step η, > 0.
    noise : float, default=0.1
        Noise amplitude ε̄ (≈ ε/√η), >= 0.
    mu_right, mu_left : float, default=0.1
        Static friction thresholds for a push to the right (μ→) and to the
        left (μ←), >= 0.
    n_steps : int, default=10_000
        Number of iterations, >= 1.
    noise_mode : {"per_block", "shared"}, default="per_block"
        Independent ξ per block, or one ξ per step shared by all blocks.
    """

    _ORDER = 1

    n_blocks: int = 7
    k: float = 1.0
    y: float = 1.0
    eta: float = 0.01
    noise: float = 0.1
    mu_right: float = 0.1
    mu_left: float = 0.1
    n_steps: int = 10_000
    noise_mode: str = "per_block"

    def __post_init__(self):
        _validate(
            self,
            _common_rules()
            + [
                lambda c: _check_number("eta", c.eta, lo=0, lo_open=True),
                lambda c: _check_number("n_steps", c.n_steps, lo=1, integer=True),
            ],
        )


@dataclass(frozen=True)
class LangevinConfig(_ConfigMixin):
    """The second-order (Langevin) chain with kinetic friction (docs/science.md#chains).

    For every block ``ℓ``::

        dx_ℓ = v_ℓ dt
        dv_ℓ = [ (k/m) Δ_ℓ + f(v_ℓ) − (γ/m) v_ℓ ] dt + ε e^{−λt} dW

    where ``Δ_ℓ = (x_{ℓ+1} − x_ℓ) − (x_ℓ − x_{ℓ−1})`` is the stretch difference
    (so ``k Δ_ℓ`` is the spring force ``F_ℓ`` and the acceleration it causes is
    ``F_ℓ / m``), and ``f(v) = −μ→`` for ``v > 0``, ``+μ←`` for ``v < 0``,
    ``0`` for ``v = 0`` (an acceleration, as in docs/science.md#chains).

    Attributes
    ----------
    n_blocks : int, default=7
        Number of blocks L (at least 2).
    mass : float, default=1.0
        Block mass m, > 0.
    gamma : float, default=1.0
        Viscous damping γ, >= 0.
    k : float, default=0.1
        Spring constant, > 0.
    y : float, default=1.0
        Position of the pulled end.
    noise : float, default=0.003
        Noise amplitude ε, >= 0.
    decay : float, default=0.001
        Noise decay rate λ, >= 0.
    dt : float, default=0.05
        Time step, > 0.
    t_max : float, default=700.0
        Integration time; ``n_steps = round(t_max / dt)`` steps, at least 1.
    mu_right, mu_left : float, default 0.003 and 0.004
        Kinetic friction while moving right (μ→) and left (μ←), >= 0.
    noise_mode : {"shared", "per_block"}, default="shared"
        ``"shared"``: one Wiener process drives every block's velocity (the
        reference notebook's ``ε·1·1ᵀ`` diffusion, with a single increment);
        ``"per_block"``: independent Wiener processes.
    """

    _ORDER = 2

    n_blocks: int = 7
    mass: float = 1.0
    gamma: float = 1.0
    k: float = 0.1
    y: float = 1.0
    noise: float = 0.003
    decay: float = 0.001
    dt: float = 0.05
    t_max: float = 700.0
    mu_right: float = 0.003
    mu_left: float = 0.004
    noise_mode: str = "shared"

    def __post_init__(self):
        _validate(
            self,
            _common_rules()
            + [
                lambda c: _check_number("mass", c.mass, lo=0, lo_open=True),
                lambda c: _check_number("gamma", c.gamma, lo=0),
                lambda c: _check_number("decay", c.decay, lo=0),
                lambda c: _check_number("dt", c.dt, lo=0, lo_open=True),
                lambda c: _check_number("t_max", c.t_max, lo=0, lo_open=True),
                _check_steps,
            ],
        )

    @property
    def n_steps(self) -> int:
        """Number of Euler steps, ``round(t_max / dt)``."""
        return max(int(round(self.t_max / self.dt)), 0)


def _check_steps(c: LangevinConfig) -> str | None:
    numbers_ok = all(isinstance(v, numbers.Real) and math.isfinite(v) for v in (c.t_max, c.dt))
    if numbers_ok and c.dt > 0 and c.t_max > 0:
        if round(c.t_max / c.dt) < 1:
            return f"`t_max` must be at least one step `dt`={c.dt}, got {c.t_max!r}"
    return None
