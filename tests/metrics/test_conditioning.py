"""Conditioning of SS_B (rank_b, cond_b, the near-singular warning) and the paper's float32 metric.

References are written here from the formulas, not from the package:
``trace(SS_W @ pinv(SS_B))`` with a float32 ``torch.linalg.pinv`` at its
default tolerance, and in float64 with an explicit cut-off.
"""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from dnn_spring import load_curve, separation_fuzziness
from dnn_spring.metrics._fuzziness import separation_stats
from dnn_spring.metrics._conditioning import COND_WARN_FACTOR, cond_limit
from dnn_spring.sweep._store import collect, write_record


def _scatters(x, y, dtype):
    x = torch.as_tensor(x).to(dtype)
    classes = int(y.max()) + 1
    n = x.shape[0]
    means = torch.stack([x[y == c].mean(0) for c in range(classes)])
    mu = x.mean(0)
    sb = torch.zeros(x.shape[1], x.shape[1], dtype=dtype)
    for c in range(classes):
        d = (means[c] - mu)[:, None]
        sb += float((y == c).sum()) / n * (d @ d.T)
    z = x - means[y]
    return z.T @ z / n, sb


def reference_pinv32(x, y):
    """The original code's metric: everything in float32, pinv at its default tolerance."""
    sw, sb = _scatters(x, y, torch.float32)
    return math.log(float(torch.trace(sw @ torch.linalg.pinv(sb))))


def reference_float64(x, y, rtol=1e-6):
    """float64, SS_B eigenvalues below rtol² of the largest cut explicitly."""
    sw, sb = _scatters(x, y, torch.float64)
    return math.log(float(torch.trace(sw @ torch.linalg.pinv(sb, rtol=rtol**2, hermitian=True))))


def features_with_condition(cond, *, p=100, classes=10, n=1000, seed=0):
    """Features whose SS_B has exactly ``classes - 1`` eigenvalues spread log-evenly over ``cond``.

    Class means lie on orthogonal directions with chosen singular values;
    within-class noise is centred per class, so the sample means are exact.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    basis, _ = torch.linalg.qr(torch.randn(p, p, generator=g, dtype=torch.float64))
    centred = torch.randn(classes, classes - 1, generator=g, dtype=torch.float64)
    u, _, _ = torch.linalg.svd(centred - centred.mean(0), full_matrices=False)
    scales = torch.logspace(0, -0.5 * math.log10(cond), classes - 1, dtype=torch.float64)
    means = 10 * (u * scales) @ basis[:, : classes - 1].T
    noise = torch.randn(n, p, generator=g, dtype=torch.float64)
    noise -= torch.stack([noise[y == c].mean(0) for c in range(classes)])[y]
    return means[y] + noise, y


def _stats(x, y, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = separation_stats(x, y, **kwargs)
    near = [w for w in caught if "near singular" in str(w.message)]
    return out, near


@pytest.mark.parametrize("cond", [1.0, 1e3, 1e5, 1e8, 1e11])
def test_pinv32_matches_a_float32_pinv_reference(cond):
    x, y = features_with_condition(cond, seed=1)
    expected = reference_pinv32(x, y)
    assert abs(math.log(separation_fuzziness(x, y, method="pinv32")) - expected) < 1e-3
    out, _ = _stats(x, y)  # the default method reports the pinv32 value too
    assert abs(out["log_d_pinv32"] - expected) < 1e-3


def test_pinv32_on_random_float32_features():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(500, 40, generator=g)
    y = torch.randint(0, 5, (500,), generator=g)
    x[:, :5] += 2 * torch.eye(5)[y]
    expected = reference_pinv32(x, y)
    assert abs(math.log(separation_fuzziness(x, y, method="pinv32")) - expected) < 1e-3
    assert abs(math.log(separation_fuzziness(x, y)) - reference_float64(x, y)) < 1e-9


@pytest.mark.parametrize("cond", [1.0, 1e4, 1e8, 1e11, 1e13])
def test_float64_default_matches_a_reference_with_an_explicit_cutoff(cond):
    x, y = features_with_condition(cond, seed=2)
    # float64 itself is good to about eps64 · cond relative
    tol = max(1e-9, 1e-15 * cond)
    assert abs(math.log(separation_fuzziness(x, y)) - reference_float64(x, y)) < tol


def test_pinv32_under_reports_an_ill_conditioned_scatter():
    x, y = features_with_condition(1e8)
    out, _ = _stats(x, y)
    assert out["log_d"] - out["log_d_pinv32"] > 5  # pinv32 dropped directions the float64 kept


@pytest.mark.parametrize("cond", [1.0, 1e3, 1e8, 3e10, 1e11])
def test_rank_and_condition_number_are_reported(cond):
    x, y = features_with_condition(cond)
    out, near = _stats(x, y)
    assert out["rank_b"] == out["max_rank_b"] == 9
    assert out["cond_b"] == pytest.approx(cond, rel=1e-4)
    # the warning appears exactly when cond_b is within COND_WARN_FACTOR of the 1e12 cut-off
    assert bool(near) == (cond * COND_WARN_FACTOR >= cond_limit("lowrank", 1e-6, 100))
    assert len(near) <= 1


def test_dropped_directions_warn_and_are_counted():
    x, y = features_with_condition(1e14)  # eigenvalues 1e-12.25 and 1e-14: under the 1e-12 cut
    out, near = _stats(x, y)
    assert out["rank_b"] == 7 and out["max_rank_b"] == 9
    assert len(near) == 1 and "rank_b 7 of 9" in str(near[0].message)
    out32, near32 = _stats(x, y, method="pinv32")
    assert out32["rank_b"] < 7 and len(near32) == 1


def test_pinv32_warns_at_its_own_cutoff():
    limit = cond_limit("pinv32", 1e-6, 100)  # 1 / (100 · eps32) ≈ 8.4e4
    quiet, near = _stats(*features_with_condition(limit / COND_WARN_FACTOR / 3), method="pinv32")
    assert quiet["rank_b"] == 9 and not near
    loud, near = _stats(*features_with_condition(limit / COND_WARN_FACTOR * 3), method="pinv32")
    assert loud["rank_b"] == 9 and len(near) == 1


def test_a_rank_deficient_layer_by_design_is_named_once():
    """A width-3 bottleneck holds only 3 directions (expected there: min(C-1, p) = 3), so the
    layer after it, 10 wide, has 3 of 9: one warning, naming that layer only."""
    x, y = features_with_condition(10.0, p=20)
    model = nn.Sequential(nn.Linear(20, 20), nn.Linear(20, 3), nn.Linear(3, 10))
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = load_curve(model.double(), x, y, inverse=True)
    near = [w for w in caught if "near singular" in str(w.message)]
    assert len(near) == 1
    message = str(near[0].message)
    assert "at 2 (rank_b 3 of 9" in message
    assert "0 (rank_b" not in message and "1 (rank_b" not in message
    assert list(frame["layer"]) == ["input", "0", "1", "2"]  # the input first for features
    assert list(frame["rank_b"]) == [9, 9, 3, 3]
    assert (frame["cond_b"] >= 1).all()
    assert np.allclose(frame["log_d_pinv32"], frame["log_d"], atol=1e-3)


def test_records_and_collect_carry_the_fields(tmp_path):
    from dnn_spring.train._config import RunConfig
    from dnn_spring.train._run import train_run

    config = RunConfig().replace(depth=3, width=16, epochs=2)
    record = train_run(config)
    write_record(record, tmp_path)
    points = len(record["log_d"])
    assert len(record["rank_b"]) == len(record["cond_b"]) == len(record["log_d_pinv32"]) == points
    assert all(isinstance(r, int) and 1 <= r <= 9 for r in record["rank_b"])
    assert isinstance(record["near_singular"], list) and set(record["near_singular"]) <= set(record["layers"])
    on_disk = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert on_disk["cond_b"] == record["cond_b"]
    table = collect(tmp_path)
    assert {"rank_b", "cond_b", "log_d_pinv32", "c_pinv32", "regime_pinv32"} <= set(table.columns)
    assert math.isfinite(table["c_pinv32"][0])


def test_cells_and_figures_follow_the_chosen_curve():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from dnn_spring.analysis._phase_plots import cell_table, phase_diagram

    rows = []
    for slope in (0.0, 1.0):
        for noise in (0.0, 0.4):
            for seed in (1, 2):
                rows.append({"slope": slope, "noise": noise, "seed": seed, "status": "ok",
                             "test_acc": 0.9, "log_d": [4.0, 3.0, 2.0, 1.0, 0.0],
                             "log_d_pinv32": [4.0, 3.5, 3.2, 3.1, 0.0]})
    table = pd.DataFrame(rows)
    cells = cell_table(table, curve="log_d_pinv32")
    assert np.allclose(np.stack(cells["curve"]), [4.0, 3.5, 3.2, 3.1])
    assert set(cells["regime"]) == {"convex"}
    assert set(cell_table(table)["regime"]) == {"linear"}
    phase_diagram(table, curve="log_d_pinv32")
    with pytest.raises(ValueError, match="log_d_pinv32"):
        cell_table(table.drop(columns="log_d_pinv32"), curve="log_d_pinv32")


def test_the_command_line_note_names_the_records_near_singular_points():
    from dnn_spring.cli.train import near_singular_note

    assert near_singular_note({"near_singular": []}) is None
    assert near_singular_note({}) is None  # records before 0.5.0
    note = near_singular_note({"near_singular": ["blocks.6", "head"]})
    assert note.startswith("note: SS_B is near singular at blocks.6, head:") and "\n" not in note
