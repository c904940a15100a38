"""How near singular the between-class scatter SS_B is, and the paper's float32 metric.

D = Tr(SS_W · SS_B^+) needs the inverse of SS_B on its span.  When SS_B is
ill conditioned its small eigenvalues carry large weights in D, and where a
direction is cut decides the number.  Two cut-offs are in use:

``"lowrank"`` (the default, float64)
    keeps the directions whose SS_B eigenvalue exceeds ``rtol**2`` (1e-12 at
    the default ``rtol=1e-6``) of the largest; its limit on ``cond_b`` is
    ``1 / rtol**2``.
``"pinv32"`` (the original paper code)
    ``torch.linalg.pinv`` of a float32 SS_B at its default tolerance: an
    eigenvalue is kept when it exceeds ``p · eps32`` of the largest
    (``eps32 = 1.19e-7``, ``p`` the width; 1.2e-5 at p = 100), so its limit on
    ``cond_b`` is ``1 / (p · eps32)``, about 8.4e4 at p = 100.

Each measurement reports ``rank_b`` (directions kept) and ``cond_b`` (largest
over smallest kept eigenvalue of SS_B, in float64).  A point is *near
singular* when it kept fewer directions than ``min(C − 1, p)``, or when
``cond_b`` is within a factor :data:`COND_WARN_FACTOR` (100) of its method's
limit; :func:`warn_near_singular` then gives one warning naming the points.
"""

from __future__ import annotations

import math
import warnings

import torch

__all__ = ["METHODS", "COND_WARN_FACTOR", "cond_limit", "kept_spectrum",
           "pinv32_fuzziness", "near_singular", "warn_near_singular", "near_singular_note"]

#: The metric's ways of inverting SS_B.
METHODS = ("lowrank", "pinv32")
#: Warn when cond_b is within this factor of the method's cut-off.
COND_WARN_FACTOR = 100.0
_EPS32 = float(torch.finfo(torch.float32).eps)


def cond_limit(method: str, rtol: float, width: int) -> float:
    """The largest ``cond_b`` a method can keep (the inverse of its relative cut-off)."""
    if method == "pinv32":
        return 1.0 / (max(int(width), 1) * _EPS32)
    return 1.0 / float(rtol) ** 2


def kept_spectrum(eigenvalues: torch.Tensor, rank: int) -> float:
    """``cond_b``: largest over smallest of the first ``rank`` (descending) eigenvalues; NaN at rank 0."""
    if rank == 0:
        return math.nan
    return float(eigenvalues[0] / eigenvalues[rank - 1])


def pinv32_fuzziness(ss_w: torch.Tensor, ss_b: torch.Tensor) -> "tuple[float, int]":
    """``(D, rank)`` as the original code computes them: float32, ``torch.linalg.pinv``'s default tolerance.

    Parameters
    ----------
    ss_w, ss_b : tensor of shape (p, p)
        The scatter matrices (any float dtype; cast to float32 here).

    Returns
    -------
    d : float
        ``trace(SS_W @ pinv(SS_B))`` in float32 arithmetic.
    rank : int
        Singular values of the float32 SS_B that ``pinv`` kept (above
        ``max(p, p) · eps32`` of the largest, its default).
    """
    sb32 = ss_b.to(torch.float32)
    sw32 = ss_w.to(torch.float32)
    d = float(torch.trace(sw32 @ torch.linalg.pinv(sb32)))
    s = torch.linalg.svdvals(sb32)
    rank = int((s > s[0] * sb32.shape[0] * _EPS32).sum()) if float(s[0]) > 0 else 0
    return d, rank


def near_singular(rank_b: int, max_rank_b: int, cond_b: float, limit: float) -> bool:
    """True when directions were dropped or ``cond_b`` is within :data:`COND_WARN_FACTOR` of ``limit``.

    Rank 0 (class means coincide, D infinite) is not "near" singular: it has its own warning.
    """
    if rank_b == 0:
        return False
    if rank_b < max_rank_b:
        return True
    return math.isfinite(cond_b) and cond_b * COND_WARN_FACTOR >= limit


def warn_near_singular(points, *, stacklevel: int = 3) -> None:
    """One ``RuntimeWarning`` naming every near-singular point, or nothing.

    ``points`` is a list of ``(name, result)`` pairs, ``result`` the dict of
    :meth:`~dnn_spring.metrics._fuzziness.FuzzinessAccumulator.result`.
    """
    bad = []
    for name, res in points:
        if res.get("near_singular"):
            bad.append(f"{name} (rank_b {res['rank_b']} of {res['max_rank_b']}, cond_b {res['cond_b']:.2g})")
    if bad:
        warnings.warn(
            "between-class scatter SS_B is near singular at " + ", ".join(bad)
            + f"; log D there depends on the rank cut-off (directions dropped, or cond_b within "
            f"a factor {COND_WARN_FACTOR:g} of the cut-off): compare method='lowrank' and 'pinv32'",
            RuntimeWarning, stacklevel=stacklevel)


def near_singular_note(names, hint: str) -> "str | None":
    """The command line's one-line note naming near-singular points (None when there are none)."""
    if not names:
        return None
    return (f"note: SS_B is near singular at {', '.join(names)}: log D there depends on the "
            f"rank cut-off ({hint})")
