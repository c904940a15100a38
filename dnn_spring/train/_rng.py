"""Counter-based random streams: every member's draws in a fixed number of tensor ops.

A batched group needs, every epoch, each member's own data order and noise,
and every step its own dropout masks and Langevin noise.  With one
``torch.Generator`` per member that is a Python loop over members, N small
kernels per draw.  Here a draw is a pure function of

    (member key, counter, index)  ->  64 random bits,

written in int64 tensor ops, so the whole group draws at once and a
member's numbers depend on nothing else: not on the group, its size or the
member's position in it, nor on the device's generator state.

The function is SplitMix64 (Steele, Lea & Flood 2014): the state of draw
``i`` is ``base + (i + 1)·γ`` with the golden-ratio increment γ, and the output
is the state through the SplitMix64 finaliser (two xor-shift-multiply
rounds).  ``base`` is the finaliser of ``key + counter·γ'`` (another odd
constant), so each counter value starts a fresh, decorrelated sequence.
``key`` is the member's 64-bit seed of the stream (:func:`member_keys`, from
:func:`~dnn_spring.train._rules.member_seeds`), and the counter is the epoch (data
order, data noise) or the optimiser step (dropout, Langevin noise); it may be
an int or a 0-dim int64 tensor on the device (the CUDA-graph step keeps it
on the device and bumps it in place).

int64 products wrap modulo 2**64 on the CPU and on CUDA, and a logical right
shift is an arithmetic one masked (:func:`_shr`), so the bits are the same
on every device.  Floats made from them:

* :func:`uniform`: the top 24 bits as ``k · 2**-24`` in [0, 1), exact;
* :func:`normal`: Box–Muller on two 24-bit uniforms of one word, both
  branches (two normals per word), float32; its tails are cut at |z| <= 5.77;
* :func:`below`: an integer in [0, m) by a 32-bit multiply-shift;
* :func:`order`: a permutation, the stable argsort of 64-bit keys.

Box–Muller uses ``log``, ``sqrt`` and ``cos``, whose vectorised and scalar
CPU kernels may round differently; :func:`normal` pads each member's row to a
multiple of 64 values, so a member's values never straddle a vector tail
or a two-thread seam (see :mod:`dnn_spring.train._member_ops`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dnn_spring.train._rules import member_seeds

__all__ = ["STREAM_NAMES", "init_generator", "member_keys", "random_bits", "uniform", "normal",
           "below", "order", "keep_mask", "noise_levels", "epoch_samples"]

#: The streams a group draws from with counters (the initialisation keeps a generator).
STREAM_NAMES = ("order", "coin", "label", "input", "dropout", "langevin")


def _signed(c: int) -> int:
    return c - (1 << 64) if c >= 1 << 63 else c


_GAMMA = _signed(0x9E3779B97F4A7C15)
_COUNTER = _signed(0xD1B54A32D192ED03)
_M1 = _signed(0xBF58476D1CE4E5B9)
_M2 = _signed(0x94D049BB133111EB)
_ROW = 64  # values per padded member row (see the module docstring)
_CPU_SLICE_BYTES = 2**21  # bytes of words per slice of members in :func:`normal` on the CPU


def _shr(x: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 ``x`` by ``k`` bits."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _mix(x: Tensor) -> Tensor:
    """The SplitMix64 finaliser (a bijection of 64-bit words), in place on ``x``.

    In place with one scratch buffer: on a CPU a fresh buffer per operation
    of an epoch's (N, n·features) draw costs more than the arithmetic.
    """
    t = torch.empty_like(x)
    for shift, factor in ((30, _M1), (27, _M2), (31, None)):
        torch.bitwise_right_shift(x, shift, out=t)
        x.bitwise_xor_(t.bitwise_and_((1 << (64 - shift)) - 1))  # a logical shift
        if factor is not None:
            x.mul_(factor)
    return x


def init_generator(seed: int) -> torch.Generator:
    """The CPU generator of a run's initialisation (its ``init`` seed stream)."""
    return torch.Generator().manual_seed(member_seeds(seed)["init"])


def member_keys(seeds, device) -> dict:
    """``{stream: (N,) int64 tensor}``: each member's key for each of :data:`STREAM_NAMES`.

    ``seeds`` are the members' run seeds.  The keys are drawn from the
    members' :func:`~dnn_spring.train._rules.member_seeds` streams: ``order`` from
    ``order``; ``coin``, ``label`` and ``input`` from ``noise``; ``dropout``
    and ``langevin`` from their own.
    """
    parent = {"order": "order", "coin": "noise", "label": "noise", "input": "noise",
              "dropout": "dropout", "langevin": "langevin"}
    rows = [member_seeds(s) for s in seeds]
    out = {}
    for j, name in enumerate(STREAM_NAMES):
        base = torch.tensor([_signed(r[parent[name]]) for r in rows], dtype=torch.int64)
        step = torch.tensor(_GAMMA, dtype=torch.int64) * (j + 1)  # wraps, as a tensor
        out[name] = _mix(base + step).to(device)  # distinct keys for shared parents
    return out


def random_bits(keys: Tensor, counter, n: int) -> Tensor:
    """(N, n) int64 random words: draws 0..n-1 of each member's sequence at ``counter``.

    Parameters
    ----------
    keys : Tensor of shape (N,), int64
        The members' keys of one stream (:func:`member_keys`).
    counter : int or 0-dim int64 Tensor
        Epoch or step; each value gives an independent sequence.
    n : int
    """
    if isinstance(counter, Tensor):
        offset = counter * _COUNTER  # wraps, on the device
    else:  # a host int: the same product modulo 2**64, as a scalar (no copy to the device)
        offset = _signed((int(counter) * (_COUNTER % (1 << 64))) % (1 << 64))
    base = _mix(keys.view(-1, 1) + offset)
    index = torch.arange(1, n + 1, device=keys.device, dtype=torch.int64)
    return _mix(torch.add(base, index * _GAMMA))


def uniform(keys: Tensor, counter, n: int) -> Tensor:
    """(N, n) float32 uniforms in [0, 1), multiples of 2**-24."""
    return _shr(random_bits(keys, counter, n), 40).float() * 2.0**-24


def normal(keys: Tensor, counter, n: int, *, cpu_slices: bool = False) -> Tensor:
    """(N, n) float32 standard normals: Box–Muller, two per 64-bit word.

    Word j of ``w = ceil(n / 2)`` words, rounded up to a multiple of 64,
    gives ``r·cos θ`` at index j and ``r·sin θ`` at index j + w, with
    ``r = sqrt(-2 log u1)``, ``θ = 2π u2`` and u1 in (0, 1], u2 in [0, 1) the
    word's top 24 and next 24 bits.

    With ``cpu_slices`` (the epoch's input noise) and on the CPU, the
    members are drawn in slices of about :data:`_CPU_SLICE_BYTES` of words
    (cache-sized: 2.1x faster for an epoch's input noise of 60 members than
    one pass over all of them), so there the operator count grows with N; on
    a GPU, and without ``cpu_slices``, it is one pass.  The values are the
    same either way.
    """
    words = -(-(-(-n // 2)) // _ROW) * _ROW
    step = keys.shape[0]
    if cpu_slices and keys.device.type == "cpu":
        step = max(1, _CPU_SLICE_BYTES // (8 * words))
    parts = [_normal_words(keys[i:i + step], counter, words) for i in range(0, keys.shape[0], step)]
    z = parts[0] if len(parts) == 1 else torch.cat(parts)
    return z[:, :n] if 2 * words != n else z


def _normal_words(keys: Tensor, counter, words: int) -> Tensor:
    bits = random_bits(keys, counter, words)
    radius = _shr(bits, 40).add_(1).float().mul_(2.0**-24).log_().mul_(-2.0).sqrt_()
    angle = bits.bitwise_right_shift_(16).bitwise_and_(0xFFFFFF).float()
    angle.mul_(2 * math.pi * 2.0**-24)
    return torch.cat([torch.cos(angle).mul_(radius), angle.sin_().mul_(radius)], dim=1)


def below(keys: Tensor, counter, n: int, m: int) -> Tensor:
    """(N, n) int64 integers uniform in [0, m), for 1 <= m < 2**31."""
    return (_shr(random_bits(keys, counter, n), 32) * m) >> 32


def order(keys: Tensor, counter, n: int) -> Tensor:
    """(N, n) int64: each member's random permutation of ``range(n)``."""
    return torch.sort(random_bits(keys, counter, n), dim=1, stable=True).indices


def keep_mask(keys: Tensor, counter, n: int, p: Tensor) -> tuple:
    """Inverted-dropout keep masks: ((N, n) bool, (N, 1) float32 scale).

    Member k drops an entry with probability ``q_k``, its ``p[k]`` rounded to a
    multiple of 2**-16 (|q - p| <= 2**-17); each entry reads 16 bits, four
    per word.  The multiplier is ``keep * scale``, ``scale = 1 / (1 - q)``.
    """
    n_drop = torch.clamp(torch.round(p.double() * 65536), max=65535).to(torch.int64)
    words = random_bits(keys, counter, -(-n // 4))
    lanes = words.view(torch.int16)[:, :n]
    keep = lanes >= (n_drop - 32768).to(torch.int16).view(-1, 1)
    return keep, (1.0 / (1.0 - n_drop.double() / 65536)).float().view(-1, 1)


def noise_levels(noise, x_std: float, device) -> tuple:
    """The members' noise levels p and input-noise scales p·x_std, as float32 tensors on ``device``.

    The scale is the float64 product rounded once.  Make them once per set of
    members and pass them to :func:`epoch_samples`: on a GPU each is a copy
    from the host, which waits for the device.
    """
    return (torch.tensor([float(v) for v in noise], device=device),
            torch.tensor([float(v) * x_std for v in noise], device=device))


def epoch_samples(x: Tensor, y: Tensor, keys: dict, epoch: int, *, shuffle: bool, noise,
                  x_std: float, n_classes: int, levels: "tuple | None" = None) -> tuple:
    """Every member's training set for one epoch, in a fixed number of tensor ops.

    Applies the rules of docs/science.md#training-and-noise (:mod:`dnn_spring.train._rules`) with the members'
    counter-based streams at counter ``epoch``: a fresh permutation from
    ``order`` (when ``shuffle``), then, for members with noise p > 0, each
    sample's label reset with probability p (``coin``) to a uniform class
    (``label``) and Gaussian input noise of standard deviation ``p·x_std``
    (``input``, indexed by (position in the epoch, feature)).

    Parameters
    ----------
    x : Tensor of shape (n, ...)
    y : Tensor of shape (n,)
    keys : dict of Tensor
        :func:`member_keys` of the N members.
    epoch : int
    shuffle : bool
        False for full batch (data order).
    noise : sequence of float of length N
        Each member's noise level p.
    levels : tuple of Tensor, optional
        :func:`noise_levels` of ``noise`` and ``x_std`` on ``x``'s device
        (made here when not given).

    Returns
    -------
    x_epoch : Tensor of shape (N, n, ...)
    y_epoch : Tensor of shape (N, n)
    """
    n_members, n = keys["order"].shape[0], len(x)
    if shuffle:
        idx = order(keys["order"], epoch, n).to(x.device)
        xe, ye = x[idx], y[idx]
    else:
        xe = x.unsqueeze(0).expand(n_members, *x.shape)
        ye = y.unsqueeze(0).expand(n_members, n)
    if not any(noise):
        return xe, ye
    dev = x.device
    p, scale = levels if levels is not None else noise_levels(noise, x_std, dev)
    reset = uniform(keys["coin"], epoch, n).to(dev) < p.view(-1, 1)
    ye = torch.where(reset, below(keys["label"], epoch, n, n_classes).to(dev), ye)
    per = math.prod(x.shape[1:])
    xi = normal(keys["input"], epoch, n * per, cpu_slices=True).to(dev).view(xe.shape)
    return xi.mul_(scale.view(-1, *([1] * x.dim()))).add_(xe), ye
