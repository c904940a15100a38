"""Separation fuzziness against an independent float64 pseudo-inverse formula."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group

from dnn_spring import separation_fuzziness
from dnn_spring.metrics._fuzziness import separation_stats
from dnn_spring.metrics._fuzziness import FuzzinessAccumulator, probe_stats


def _scatter(x, y):
    """SS_B and SS_W of docs/science.md#separation-fuzziness, written out in numpy float64."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y)
    n, p = x.shape
    mu = x.mean(0)
    ss_b = np.zeros((p, p))
    ss_w = np.zeros((p, p))
    for c in np.unique(y):
        xc = x[y == c]
        mc = xc.mean(0)
        ss_b += len(xc) * np.outer(mc - mu, mc - mu)
        ss_w += (xc - mc).T @ (xc - mc)
    return ss_b / n, ss_w / n


def reference_d(x, y):
    ss_b, ss_w = _scatter(x, y)
    # rank(SS_B) <= C-1: cut its float noise explicitly, far below real eigenvalues.
    return float(np.trace(ss_w @ np.linalg.pinv(ss_b, rcond=1e-10, hermitian=True)))


def gaussian_classes(n, p, c, *, seed, sep=1.0, weights=None):
    rng = np.random.default_rng(seed)
    y = rng.choice(c, size=n, p=weights)
    y[:c] = np.arange(c)  # every class present
    means = sep * rng.normal(size=(c, p))
    return rng.normal(size=(n, p)) + means[y], y


def rel_err(a, b):
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("n,p,c", [(400, 20, 5), (1000, 50, 10), (300, 3, 6)])
def test_matches_pinv_formula_gaussian(n, p, c):
    x, y = gaussian_classes(n, p, c, seed=n + p)
    assert rel_err(separation_fuzziness(x, y), reference_d(x, y)) < 1e-8


def test_matches_pinv_formula_imbalanced():
    x, y = gaussian_classes(800, 15, 4, seed=1, weights=[0.7, 0.2, 0.07, 0.03])
    assert np.bincount(y).min() < 40
    assert rel_err(separation_fuzziness(x, y), reference_d(x, y)) < 1e-8


def test_rank_deficient_and_constant_features():
    rng = np.random.default_rng(2)
    n, p, c = 500, 12, 5
    y = np.arange(n) % c
    # Class means confined to 2 directions: noise centred exactly within each class.
    noise = rng.normal(size=(n, p))
    for k in range(c):
        noise[y == k] -= noise[y == k].mean(0)
    x = rng.normal(size=(c, 2))[y] @ rng.normal(size=(2, p)) + noise
    x[:, 8:10] = x[:, :2]  # duplicated columns
    x[:, 10:] = 3.5  # constant columns
    stats = separation_stats(x, y)
    assert stats["rank_b"] == 2
    assert rel_err(stats["d"], reference_d(x, y)) < 1e-8


def test_p_much_larger_than_n():
    x, y = gaussian_classes(60, 2000, 4, seed=4, sep=0.3)
    assert rel_err(separation_fuzziness(x, y), reference_d(x, y)) < 1e-8


def test_streamed_equals_in_memory_and_reference():
    x, y = gaussian_classes(1000, 30, 7, seed=5)
    batches = [(torch.from_numpy(x[i:i + 128]).float(), torch.from_numpy(y[i:i + 128]))
               for i in range(0, 1000, 128)]
    streamed = separation_stats(batches)
    x32 = np.concatenate([b[0].numpy() for b in batches])
    in_memory = separation_stats(x32, y)
    assert rel_err(streamed["d"], in_memory["d"]) < 1e-10
    assert rel_err(streamed["log_inv_d"], in_memory["log_inv_d"]) < 1e-8
    assert rel_err(streamed["d"], reference_d(x32, y)) < 1e-8


def test_streaming_accepts_a_callable_of_fresh_iterators():
    x, y = gaussian_classes(300, 8, 3, seed=6)
    d = separation_fuzziness(lambda: ((x[i:i + 50], y[i:i + 50]) for i in range(0, 300, 50)))
    assert rel_err(d, reference_d(x, y)) < 1e-8


def test_companion_measures_match_formulas():
    x, y = gaussian_classes(600, 10, 4, seed=7)
    ss_b, ss_w = _scatter(x, y)
    stats = separation_stats(x, y)
    inv = np.trace(ss_b @ np.linalg.pinv(ss_w, hermitian=True))
    assert rel_err(stats["log_inv_d"], math.log(inv)) < 1e-8
    ratio = math.log(np.trace(ss_w)) - math.log(np.trace(ss_b))
    assert abs(stats["log_trace_ratio"] - ratio) < 1e-10
    assert stats["log_d"] == pytest.approx(math.log(reference_d(x, y)), rel=1e-10)


def test_inverse_skipped_above_width_limit():
    x, y = gaussian_classes(100, 50, 3, seed=8)
    assert math.isnan(separation_stats(x, y, max_inverse_width=10)["log_inv_d"])


def test_invariances():
    x, y = gaussian_classes(500, 16, 5, seed=9)
    d = separation_fuzziness(x, y)
    rot = ortho_group.rvs(16, random_state=10)
    assert rel_err(separation_fuzziness(x @ rot, y), d) < 1e-9
    assert rel_err(separation_fuzziness(7.3 * x, y), d) < 1e-9
    perm = np.random.default_rng(11).permutation(500)
    assert rel_err(separation_fuzziness(x[perm], y[perm]), d) < 1e-9
    # Relabelling the classes changes nothing either.
    assert rel_err(separation_fuzziness(x, (y + 3) * 2), d) < 1e-9


def test_better_separated_classes_give_smaller_d():
    x, y = gaussian_classes(500, 10, 4, seed=12, sep=0.5)
    x2, _ = gaussian_classes(500, 10, 4, seed=12, sep=3.0)
    assert separation_fuzziness(x2, y) < separation_fuzziness(x, y)


def test_torch_input_and_trailing_axes_are_flattened():
    x, y = gaussian_classes(200, 12, 3, seed=13)
    d = separation_fuzziness(torch.from_numpy(x).reshape(200, 3, 2, 2), torch.from_numpy(y))
    assert rel_err(d, reference_d(x, y)) < 1e-8


@pytest.mark.parametrize(
    "x,y,match",
    [
        (np.zeros((5, 3)), np.zeros(4, int), "same length"),
        (np.random.default_rng(0).normal(size=(6, 3)), np.zeros(6, int), "at least two classes"),
        (np.full((4, 2), np.nan), np.array([0, 1, 0, 1]), "NaN or inf"),
        (np.array([[np.inf, 0], [0, 1], [1, 1]]), np.array([0, 1, 0]), "NaN or inf"),
        (np.ones((4, 2)), np.array([0.5, 1, 0, 1]), "integers"),
        (np.ones((4, 2)), np.array([-1, 1, 0, 1]), "non-negative"),
    ],
)
def test_bad_input_errors(x, y, match):
    with pytest.raises(ValueError, match=match):
        separation_fuzziness(x, y)


def test_empty_class_error():
    x, y = gaussian_classes(100, 4, 3, seed=14)
    with pytest.raises(ValueError, match="class 3 has no samples"):
        separation_fuzziness(x, y, n_classes=4)


def test_missing_labels_error():
    with pytest.raises(ValueError, match="`labels` is required"):
        separation_fuzziness(np.ones((4, 2)))
    with pytest.raises(ValueError, match="no labels"):
        separation_fuzziness([np.ones((4, 2))])


def test_one_shot_iterator_is_refused():
    x, y = gaussian_classes(100, 4, 3, seed=15)
    with pytest.raises(TypeError, match="re-iterable"):
        separation_fuzziness(iter([(x, y)]))


def test_coinciding_class_means_give_infinite_d():
    rng = np.random.default_rng(16)
    x = rng.normal(size=(20, 3))
    x = np.concatenate([x, x])  # both classes hold the same points
    y = np.repeat([0, 1], 20)
    with pytest.warns(RuntimeWarning, match="class means coincide"):
        assert separation_fuzziness(x, y) == math.inf


def test_accumulator_checks_the_passes_agree():
    x, y = gaussian_classes(100, 4, 3, seed=17)
    acc = FuzzinessAccumulator()
    acc.update_means(x, y)
    acc.finish_means()
    acc.update_within(x[:50], y[:50])
    with pytest.raises(ValueError, match="second pass saw 50 samples"):
        acc.result()


def test_probes_reference_values():
    x, y = gaussian_classes(400, 6, 3, seed=18, sep=2.0)
    out = probe_stats(x, y)
    onehot = np.eye(3)[y]
    xc = np.c_[x, np.ones(len(x))]
    beta, *_ = np.linalg.lstsq(xc, onehot, rcond=None)
    centred = onehot - onehot.mean(0)
    expected = ((onehot - xc @ beta) ** 2).sum() / (centred**2).sum()
    assert out["lin_residual"] == pytest.approx(expected, rel=1e-8)
    assert 0 < out["logistic_loss"] < math.log(3)


def test_large_label_ids_are_relabelled_not_allocated():
    x, y = gaussian_classes(200, 5, 3, seed=19)
    reference = separation_fuzziness(x, y)
    ids = np.array([7, 10**9, 3 * 10**9 + 1])[y]  # one row per id up to 3e9: 120 GB of sums
    assert separation_fuzziness(x, ids) == pytest.approx(reference, rel=1e-12)
    batches = [(x[:80], ids[:80]), (x[80:], ids[80:])]
    assert separation_fuzziness(batches) == pytest.approx(reference, rel=1e-12)
    assert separation_stats(x, ids)["n_classes"] == 3
    with pytest.raises(ValueError, match="`labels` must be < n_classes=3, got 3000000001"):
        separation_fuzziness(x, ids, n_classes=3)
    acc = FuzzinessAccumulator()
    acc.update_means(x, ids)
    acc.finish_means()
    with pytest.raises(ValueError, match="label 5 was not seen in the first pass"):
        acc.update_within(x[:2], np.array([5, 7]))


@pytest.mark.parametrize("x, y, error, match", [
    (np.empty((0, 5)), np.empty(0, int), ValueError,
     r"`features` must hold at least one sample, got shape \(0, 5\)"),
    (np.array([]), np.array([], int), ValueError,
     r"`features` must hold at least one sample, got shape \(0,\)"),
    (np.empty((5, 0)), np.arange(5) % 2, ValueError,
     r"`features` must have at least one feature per sample, got shape \(5, 0\)"),
    (np.ones((4, 2), complex), np.arange(4) % 2, TypeError,
     "`features` must hold real numbers, got dtype torch.complex128"),
    (np.array([["a", "b"]] * 4), np.arange(4) % 2, TypeError,
     "`features` must hold real numbers, got dtype <U1"),
])
def test_empty_and_non_real_features_are_clear_errors(x, y, error, match):
    with pytest.raises(error, match=match):
        separation_fuzziness(x, y)
    with pytest.raises(error, match=match):
        probe_stats(x, y)


def test_float32_float16_and_int_features_match_float64():
    x, y = gaussian_classes(200, 5, 3, seed=20)
    x32 = x.astype(np.float32)
    reference = separation_fuzziness(x32.astype(np.float64), y)
    assert separation_fuzziness(x32, y) == reference
    assert separation_fuzziness(torch.from_numpy(x32), torch.from_numpy(y)) == reference
    mixed = [(x32[:100], y[:100]), (x32[100:].astype(np.float64), y[100:])]
    assert separation_fuzziness(mixed) == pytest.approx(reference, rel=1e-12)
