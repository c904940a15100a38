"""Statistical agreement of the fast backends with sdeint (second-order chain).

The fast Euler–Maruyama backends and sdeint draw different random numbers
(different seeds, or a different scheme for ``itoint``), so they are compared
in distribution: final positions of ``N = 200`` chains per backend, reduced
``t_max = 50``.  Tolerances, per block:

* means: ``|mean_a − mean_b| < 4 · sqrt(se_a² + se_b²)`` (a 4-standard-error
  band, two-sided p ≈ 6e-5 under equal means);
* variances: ``var_a / var_b`` inside the central 99.9 % interval of the
  F(N−1, N−1) distribution (≈ [0.63, 1.60] for N = 200).

All seeds are fixed, so the outcome is deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dnn_spring.spring import LangevinConfig, simulate_langevin_batch

N = 200


def _assert_same_distribution(a: np.ndarray, b: np.ndarray) -> None:
    n_a, n_b = len(a), len(b)
    se = np.sqrt(a.var(axis=0, ddof=1) / n_a + b.var(axis=0, ddof=1) / n_b)
    z = np.abs(a.mean(axis=0) - b.mean(axis=0)) / se
    assert np.all(z < 4.0), f"mean differences in standard errors: {z.round(2)}"
    ratio = a.var(axis=0, ddof=1) / b.var(axis=0, ddof=1)
    lo, hi = stats.f.ppf([0.0005, 0.9995], n_a - 1, n_b - 1)
    assert np.all((ratio > lo) & (ratio < hi)), f"variance ratios {ratio.round(2)} not in [{lo:.2f}, {hi:.2f}]"


def _finals(cfg, backend, seed, **kw):
    return simulate_langevin_batch([cfg] * N, backend=backend, seed=seed,
                                   record_every=10**9, **kw).final


def test_torch_matches_numpy_in_distribution():
    cfg = LangevinConfig(t_max=50.0, noise=0.01, noise_mode="per_block")
    _assert_same_distribution(_finals(cfg, "numpy", 1), _finals(cfg, "torch", 2, device="cpu"))


@pytest.mark.slow
def test_numpy_matches_sdeint_itoint_in_distribution():
    # the reference: shared noise, sdeint.itoint (SRI2), ~10 s
    cfg = LangevinConfig(t_max=50.0, noise=0.01, noise_mode="shared")
    _assert_same_distribution(_finals(cfg, "numpy", 1), _finals(cfg, "sdeint", 2, method="itoint"))


@pytest.mark.slow
def test_numpy_matches_sdeint_itoeuler_per_block_in_distribution():
    cfg = LangevinConfig(t_max=50.0, noise=0.01, noise_mode="per_block")
    _assert_same_distribution(_finals(cfg, "numpy", 3),
                              _finals(cfg, "sdeint", 4, method="itoEuler"))
