"""Separation fuzziness and its companions (docs/science.md#separation-fuzziness), in float64, streamable.

With ``n_c`` samples in class ``c``, class means ``μ_c`` and global mean ``μ``::

    SS_B = (1/N) Σ_c n_c (μ_c − μ)(μ_c − μ)^T
    SS_W = (1/N) Σ_i (x_i − μ_{y_i})(x_i − μ_{y_i})^T
    D    = Tr(SS_W · SS_B^+)

``SS_B = A^T A`` with ``A = W^{1/2} M`` (``W = diag(n_c/N)``, ``M`` the C×p matrix
of centred class means), so with the thin SVD ``A = U S V^T`` of rank ``r``::

    D = (1/N) Σ_i ‖S_r^{-1} V_r^T (x_i − μ_{y_i})‖²

which costs O(N·p·C) time and O(p·C) memory.  The rank is cut explicitly:
singular values below ``rtol · s_max`` are dropped (``rtol=1e-6`` keeps the
directions whose SS_B eigenvalue exceeds 1e-12 of the largest).
Statistics are gathered in two passes, so features may arrive in batches.
Every result also says how near singular SS_B is (``rank_b``, ``cond_b``) and
can give the original code's float32 ``pinv`` value instead
(``method="pinv32"``); see :mod:`dnn_spring.metrics._conditioning`.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Iterable

import numpy as np
import torch

from dnn_spring._checks import check_choice
from dnn_spring.metrics._conditioning import (METHODS, cond_limit, kept_spectrum, near_singular,
                                     pinv32_fuzziness, warn_near_singular)
from dnn_spring.metrics._distributed import merge_class_rows, sum_across, sum_floats, use_distributed
from dnn_spring.metrics._features import as_features, as_labels, check_not_empty, feature_label_pairs
from dnn_spring.metrics._probes import probe_stats

__all__ = ["FuzzinessAccumulator", "separation_fuzziness", "separation_stats", "probe_stats"]

DEFAULT_RTOL = 1e-6
DEFAULT_MAX_INVERSE_WIDTH = 2048


class FuzzinessAccumulator:
    """Two-pass streaming accumulator of the separation statistics.

    Pass 1 (:meth:`update_means`) gathers class counts and sums; pass 2
    (:meth:`update_within`) gathers the within-class terms.  Between them
    :meth:`finish_means` fixes the class means and the projection
    ``V_r S_r^{-1}``.  Memory is O(p·C), plus O(p²) when ``inverse`` is on.

    Parameters
    ----------
    n_classes : int, optional
        Number of classes; every class in ``0..n_classes-1`` must then have
        samples.  By default the classes are the distinct labels seen, which
        may be any non-negative integers (ids like 10**9 cost no more than
        0..C-1).
    rtol : float, default=1e-6
        Relative cut-off on the singular values of ``W^{1/2} M``.
    inverse : bool, default=True
        Also accumulate ``SS_W`` (p×p) for the inverse fuzziness
        ``Tr(SS_B · SS_W^+)``; skipped (NaN) when ``p > max_inverse_width``.
    max_inverse_width : int, default=2048
        Widest layer for which ``SS_W`` is formed.
    name : str, optional
        Used in error messages (a layer name).
    method : {"lowrank", "pinv32"}, default="lowrank"
        ``"lowrank"``: float64, cut at ``rtol``.  ``"pinv32"``: the original
        code's float32 ``torch.linalg.pinv`` of SS_B at its default tolerance
        (forms the p×p SS_W whatever ``max_inverse_width``).
    distributed : bool or None, default=False
        Sum the statistics over the ranks of ``torch.distributed`` in both
        passes (in :meth:`finish_means` and :meth:`result`), so every rank
        gets the whole data's values; None: when a process group is
        initialised.  Every rank must then make the same calls.
    """

    def __init__(self, *, n_classes=None, rtol=DEFAULT_RTOL, inverse=True,
                 max_inverse_width=DEFAULT_MAX_INVERSE_WIDTH, name=None, method="lowrank",
                 distributed=False):
        if n_classes is not None and (int(n_classes) != n_classes or n_classes < 2):
            raise ValueError(f"`n_classes` must be an integer >= 2, got {n_classes!r}")
        if not 0 < rtol < 1:
            raise ValueError(f"`rtol` must be in (0, 1), got {rtol!r}")
        self.n_classes = None if n_classes is None else int(n_classes)
        check_choice("method", method, METHODS)
        self.method = method
        self.rtol = float(rtol)
        self.inverse = bool(inverse)
        self.max_inverse_width = int(max_inverse_width)
        self.name = name
        self._distributed = use_distributed(distributed)
        self._counts = None
        self._sums = None
        self._means = None
        # The class of row i of the sums: 0..n_classes-1, else the sorted labels seen.
        self._labels = None if n_classes is None else torch.arange(int(n_classes))

    # -- pass 1 ---------------------------------------------------------
    def _where(self) -> str:
        return f" (layer {self.name!r})" if self.name else ""

    def update_means(self, features, labels) -> None:
        """Add a batch to the class counts and sums (pass 1)."""
        x = as_features(features)
        y = as_labels(labels, x.shape[0], x.device)
        # One reduction instead of an elementwise mask: NaN or inf anywhere makes the sum non-finite.
        if not bool(torch.isfinite(x.sum())):
            raise ValueError(f"`features` contain NaN or inf values{self._where()}")
        if self._sums is None:
            self._p = x.shape[1]
            n_rows = 0 if self._labels is None else self._labels.numel()
            self._sums = x.new_zeros((n_rows, self._p))
            self._counts = x.new_zeros(n_rows)
        elif x.shape[1] != self._p:
            raise ValueError(f"feature width changed between batches{self._where()}: {self._p} then {x.shape[1]}")
        if y.numel() == 0:
            return
        if self.n_classes is not None and int(y.max()) >= self.n_classes:
            raise ValueError(f"`labels` must be < n_classes={self.n_classes}, got {int(y.max())}")
        if self.n_classes is None:
            self._add_classes(y, x)
            rows = self._rows(y)
        else:
            rows = y  # row c is class c
        self._sums.index_add_(0, rows, x)
        self._counts.index_add_(0, rows, torch.ones_like(y, dtype=torch.float64))

    def _add_classes(self, y: torch.Tensor, x: torch.Tensor) -> None:
        """Give every new label a row, keeping the rows in label order."""
        seen = y.new_zeros(0) if self._labels is None else self._labels.to(y.device)
        labels = torch.unique(torch.cat([seen, y]))
        if labels.numel() == seen.numel():
            self._labels = labels
            return
        old = torch.searchsorted(labels, seen)
        sums, counts = x.new_zeros((labels.numel(), self._p)), x.new_zeros(labels.numel())
        sums[old], counts[old] = self._sums, self._counts
        self._labels, self._sums, self._counts = labels, sums, counts

    def _rows(self, y: torch.Tensor) -> torch.Tensor:
        """Row of each label; -1 for a label without one."""
        labels = self._labels.to(y.device)
        rows = torch.searchsorted(labels, y).clamp_(max=labels.numel() - 1)
        return torch.where(labels[rows] == y, rows, -1)

    def finish_means(self) -> None:
        """Fix the class means and the projection onto the span of SS_B."""
        if self._distributed:
            self._merge_ranks()
        if self._sums is None or float(self._counts.sum()) == 0:
            raise ValueError(f"no samples were given{self._where()}")
        counts, sums = self._counts, self._sums
        if self.n_classes is not None:
            missing = (counts[: self.n_classes] == 0).nonzero().flatten().tolist()
            if missing:
                raise ValueError(f"class {missing[0]} has no samples (empty classes: {missing}); "
                                 f"every class in 0..{self.n_classes - 1} needs at least one")
        present = counts > 0
        n_present = int(present.sum())
        if n_present < 2:
            raise ValueError(f"`labels` must contain at least two classes, got {n_present}")
        self.n_samples = float(counts.sum())
        means = torch.zeros_like(sums)
        means[present] = sums[present] / counts[present, None]
        weights = counts / self.n_samples
        mu = (weights[:, None] * means).sum(0)
        a = weights.sqrt()[:, None] * (means - mu)  # W^{1/2} M, zero rows for absent classes
        _, s, vh = torch.linalg.svd(a[present], full_matrices=False)
        rank = int((s > self.rtol * s[0]).sum()) if float(s[0]) > 0 else 0
        self.rank = rank
        self._eig_b = s**2  # eigenvalues of SS_B, descending
        self._max_rank = min(n_present - 1, self._p)
        self.tr_b = float((s**2).sum())
        self._a = a[present]
        self._means = means
        self._proj = vh[:rank].T / s[:rank]  # V_r S_r^{-1}, shape (p, r)
        self._d_sum = 0.0
        self._w_sum = 0.0
        self._n_within = 0
        use_inverse = (self.inverse and self._p <= self.max_inverse_width) or self.method == "pinv32"
        self._sw = sums.new_zeros((self._p, self._p)) if use_inverse else None

    def _merge_ranks(self) -> None:
        """Sum the class counts and sums over the ranks (classes matched by label)."""
        rows = None if self._sums is None else torch.cat([self._sums, self._counts[:, None]], 1)
        labels, rows = merge_class_rows(self._labels, rows)
        if rows is not None:
            self._p = rows.shape[1] - 1
            self._labels, self._sums, self._counts = labels, rows[:, :-1], rows[:, -1].contiguous()

    # -- pass 2 ---------------------------------------------------------
    def update_within(self, features, labels) -> None:
        """Add a batch to the within-class sums (pass 2)."""
        if self._means is None:
            raise RuntimeError("call finish_means() after the first pass")
        x = as_features(features)
        y = as_labels(labels, x.shape[0], x.device)
        if x.shape[1] != self._p:
            raise ValueError(f"feature width changed between passes{self._where()}: {self._p} then {x.shape[1]}")
        rows = self._rows(y) if y.numel() else y
        if y.numel() and int(rows.min()) < 0:
            unseen = int(y[rows < 0][0])
            raise ValueError(f"label {unseen} was not seen in the first pass{self._where()}")
        z = self._means[rows]  # a fresh gather, so it can be overwritten in place
        z.neg_().add_(x)  # x - μ_y without a second N×p buffer
        proj = z @ self._proj
        self._d_sum += float(torch.dot(proj.ravel(), proj.ravel()))
        self._w_sum += float(torch.dot(z.ravel(), z.ravel()))
        self._n_within += z.shape[0]
        if self._sw is not None:
            self._sw.addmm_(z.T, z)

    def result(self) -> dict:
        """Return ``d``, ``log_d``, the companions, the conditioning of SS_B and sizes.

        Keys: ``d``, ``log_d`` (by ``method``), ``log_d_pinv32`` (NaN when
        SS_W was not formed), ``log_inv_d``, ``log_trace_ratio``, ``rank_b``,
        ``max_rank_b`` (``min(C − 1, p)``), ``cond_b``, ``near_singular``,
        ``width``, ``n_samples``, ``n_classes``.
        """
        if self._means is None:
            raise RuntimeError("call finish_means() and update_within() first")
        if self._distributed:  # once: later calls see the summed values
            self._distributed = False
            self._d_sum, self._w_sum, self._n_within = sum_floats(self._d_sum, self._w_sum, self._n_within)
            if self._sw is not None:
                sum_across(self._sw)
        if self._n_within != round(self.n_samples):
            raise ValueError(f"the second pass saw {self._n_within} samples, the first "
                             f"{round(self.n_samples)}{self._where()}; the data must not change between passes")
        n = self.n_samples
        tr_w = self._w_sum / n
        if self.rank == 0:
            # Class means coincide: no separation at all.  0/0 when also constant.
            d = math.inf if tr_w > 0 else math.nan
            warnings.warn(f"class means coincide{self._where()}: D is {d}", RuntimeWarning, stacklevel=3)
        else:
            d = self._d_sum / n
        d32, rank32 = math.nan, self.rank
        if self._sw is not None and self.rank > 0:
            d32, rank32 = pinv32_fuzziness(self._sw / n, self._a.T @ self._a)
        elif self._sw is not None:
            d32 = d  # no between-class direction at all: the same inf/NaN as lowrank
        rank_b = rank32 if self.method == "pinv32" else self.rank
        cond_b = kept_spectrum(self._eig_b, rank_b)
        out = {
            "d": d32 if self.method == "pinv32" else d,
            "log_d": _log(d32 if self.method == "pinv32" else d),
            "log_d_pinv32": _log(d32),
            "log_inv_d": self._log_inverse(n),
            "log_trace_ratio": _log(tr_w) - _log(self.tr_b) if self.tr_b > 0 else math.inf,
            "rank_b": rank_b,
            "max_rank_b": self._max_rank,
            "cond_b": cond_b,
            "near_singular": near_singular(rank_b, self._max_rank, cond_b,
                                           cond_limit(self.method, self.rtol, self._p)),
            "width": self._p,
            "n_samples": int(round(n)),
            "n_classes": int(self._a.shape[0]),
        }
        return out

    def _log_inverse(self, n: float) -> float:
        if self._sw is None:
            return math.nan
        ss_w = self._sw / n
        evals, evecs = torch.linalg.eigh(ss_w)
        top = float(evals[-1])
        if top <= 0:
            return math.inf
        keep = evals > self.rtol**2 * top
        # Tr(SS_B SS_W^+) = Tr(A SS_W^+ A^T)
        proj = self._a @ evecs[:, keep]
        return _log(float(((proj**2) / evals[keep]).sum()))


def _log(x: float) -> float:
    if x == 0:
        return -math.inf
    return math.log(x) if math.isfinite(x) else x


# -- input handling -----------------------------------------------------------

def _batches(features, labels) -> Callable[[], Iterable]:
    """Return a callable that yields (x, y) batches afresh on every call."""
    if isinstance(features, (torch.Tensor, np.ndarray)):
        if labels is None:
            raise ValueError("`labels` is required when `features` is an array; "
                             "pass labels= or an iterable of (features, labels) batches")
        return lambda: [(features, labels)]
    if labels is not None:
        raise ValueError("`labels` must be None when `features` is an iterable of (features, labels) batches")
    if callable(features):
        return features
    if iter(features) is features:
        raise TypeError("streaming input is read twice: pass a re-iterable (a list or a DataLoader) "
                        "or a callable returning a fresh iterator, not a one-shot iterator")
    return lambda: features


def separation_stats(features, labels=None, *, n_classes=None, rtol=DEFAULT_RTOL,
                     inverse=True, probes=False,
                     max_inverse_width=DEFAULT_MAX_INVERSE_WIDTH, method="lowrank",
                     warn=True) -> dict:
    """Separation fuzziness and its companion measures for one layer.

    Parameters
    ----------
    features : tensor or ndarray of shape (n_samples, ...), or iterable of batches
        Layer features (trailing axes are flattened), or a re-iterable of
        ``(features, labels)`` batches (a list, a DataLoader, or a callable
        returning a fresh iterator), read twice.
    labels : array-like of int of shape (n_samples,), optional
        Class indices; required with array features, None with batches.
    n_classes, rtol, inverse, max_inverse_width, method
        See :class:`FuzzinessAccumulator`.
    probes : bool, default=False
        Also fit the linear- and logistic-regression probes (in memory only).
    warn : bool, default=True
        Give a ``RuntimeWarning`` when SS_B is near singular (directions
        dropped, or ``cond_b`` within a factor 100 of the cut-off; see
        :mod:`dnn_spring.metrics._conditioning`).

    Returns
    -------
    dict
        ``d`` (D of docs/science.md#separation-fuzziness), ``log_d``, ``log_d_pinv32`` (the original
        code's float32 value; NaN when SS_W is not formed), ``log_inv_d``
        (log Tr(SS_B SS_W^+)), ``log_trace_ratio`` (log Tr SS_W − log Tr
        SS_B), ``rank_b`` (between-class directions kept), ``max_rank_b``
        (``min(C − 1, p)``), ``cond_b`` (condition number of the kept part
        of SS_B), ``near_singular``, ``width``, ``n_samples``,
        ``n_classes``; with ``probes`` also ``lin_residual`` and
        ``logistic_loss``.
    """
    if isinstance(features, (torch.Tensor, np.ndarray)):
        check_not_empty(features)
        features = as_features(features)  # convert once, not once per pass
    get_batches = _batches(features, labels)
    acc = FuzzinessAccumulator(n_classes=n_classes, rtol=rtol, inverse=inverse,
                               max_inverse_width=max_inverse_width, method=method)
    for x, y in feature_label_pairs(get_batches()):
        acc.update_means(x, y)
    acc.finish_means()
    for x, y in feature_label_pairs(get_batches()):
        acc.update_within(x, y)
    out = acc.result()
    if warn:
        warn_near_singular([("the features", out)])
    if probes:
        if labels is None:
            raise ValueError("`probes=True` needs in-memory features, not batches")
        out.update(probe_stats(features, labels))
    return out


def separation_fuzziness(features, labels=None, *, n_classes=None, rtol=DEFAULT_RTOL,
                         method="lowrank") -> float:
    """Separation fuzziness ``D = Tr(SS_W · SS_B^+)`` of one layer (docs/science.md#separation-fuzziness).

    Parameters
    ----------
    features : tensor or ndarray of shape (n_samples, ...), or iterable of batches
        See :func:`separation_stats`.
    labels : array-like of int of shape (n_samples,), optional
        Class indices in ``0..C-1`` (any non-negative integers work, e.g.
        ids around 10**9).
    n_classes : int, optional
        Require exactly the classes ``0..n_classes-1`` to be present.
    rtol : float, default=1e-6
        Relative singular-value cut-off for the rank of SS_B.
    method : {"lowrank", "pinv32"}, default="lowrank"
        ``"pinv32"`` reproduces the original code: ``trace(SS_W @
        torch.linalg.pinv(SS_B))`` in float32 at pinv's default tolerance.
        It under-reports D once ``cond_b`` passes about ``1 / (p · 1.2e-7)``
        (8e4 at width 100); use it only to compare with published numbers.

    Returns
    -------
    float
        D ≥ 0 in float64; smaller means better separated.  ``log D`` is the
        load-curve value.

    Examples
    --------
    >>> import torch
    >>> from dnn_spring import separation_fuzziness
    >>> x, y = torch.randn(300, 20), torch.arange(300) % 3
    >>> round(separation_fuzziness(x + 5 * torch.eye(3)[y].repeat(1, 7)[:, :20], y), 3) < 1
    True
    """
    return separation_stats(features, labels, n_classes=n_classes, rtol=rtol, inverse=False,
                            method=method)["d"]
