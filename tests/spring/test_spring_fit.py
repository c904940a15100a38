"""Fitting the spring–block chain to load curves (dnn_spring.spring.fit, dnn_spring.analysis._chain_fits)."""

import json

import numpy as np
import pandas as pd
import pytest

from dnn_spring.cli import main as cli_main
from dnn_spring.analysis._chain_fits import analogy_correlations, fit_sweep, plot_fit_maps
from dnn_spring.spring import FirstOrderConfig, fit_spring_block, normalise_curve
from dnn_spring.spring.first_order import simulate_first_order_batch

STEPS = 4000  # shorter chains keep the tests quick; targets and fits use the same length
L = 7


def chain_target(mu, asym, eps, *, n_blocks=L, seeds=range(100, 108)):
    """The mean curve of 8 chains with other seeds than the fit's: a noisy measurement."""
    config = FirstOrderConfig(n_blocks=n_blocks, mu_right=mu, mu_left=mu * asym, noise=eps,
                              n_steps=STEPS)
    result = simulate_first_order_batch([config] * len(seeds), seed=list(seeds),
                                        record_every=STEPS)
    return result.curves.mean(0)


# lazy (strong friction, little noise: concave), active (asymmetric friction
# shaken hard: convex), linear (noise above friction), and three between
CASES = {
    "lazy": (0.3, 1.0, 0.05),
    "active": (0.2, 2.0, 0.4),
    "linear": (0.05, 1.0, 0.3),
    "stiff": (0.5, 1.0, 0.1),
    "between": (0.2, 1.0, 0.1),
    "drifting": (0.1, 2.0, 0.1),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.slow
def test_fit_recovers_the_chains_own_parameters(name):
    truth = dict(zip(("mu_right", "asymmetry", "noise"), CASES[name]))
    target = chain_target(*CASES[name])
    fit = fit_spring_block(target, n_steps=STEPS)
    assert fit.n_blocks == L and fit.curve.shape == target.shape
    assert fit.residual < 0.03
    for param, value in truth.items():
        low, high = fit.uncertainty[param]
        assert low <= value <= high, (param, value, (low, high))
    # the fitted curve is on the target's scale and has its shape
    np.testing.assert_allclose(normalise_curve(fit.curve), normalise_curve(target), atol=0.08)
    assert fit.mu_left == pytest.approx(fit.mu_right * fit.asymmetry)


@pytest.mark.slow
def test_what_a_curve_cannot_tell_is_reported():
    lazy = fit_spring_block(chain_target(*CASES["lazy"]), n_steps=STEPS)
    assert lazy.uncertainty["mu_right"][0] > 0.05  # "strong friction"
    assert lazy.uncertainty["noise"][0] == 0.0  # "little noise": bounded above only
    assert not lazy.identified["noise"]
    active = fit_spring_block(chain_target(*CASES["active"]), n_steps=STEPS)
    assert active.identified["mu_right"] and active.identified["noise"]
    assert active.uncertainty["asymmetry"][0] >= 1.0  # convex: mu_left above mu_right
    linear = fit_spring_block(chain_target(*CASES["linear"]), n_steps=STEPS)
    # a straight curve says "noise beats friction", not how much of each
    assert not any(linear.identified.values())
    assert linear.uncertainty["mu_right"] == (0.0, float("inf"))


@pytest.mark.slow
def test_inputs_records_frames_arrays_and_errors():
    target = chain_target(*CASES["lazy"])
    logits = 5.0  # a record or a load_curve frame ends with the logits point: dropped
    from_array = fit_spring_block(target, n_steps=STEPS)
    from_record = fit_spring_block({"log_d": [*target, logits]}, n_steps=STEPS)
    frame = pd.DataFrame({"layer": [f"l{i}" for i in range(L + 2)], "log_d": [*target, logits]})
    from_frame = fit_spring_block(frame, n_steps=STEPS)
    assert from_array.mu_right == from_record.mu_right == from_frame.mu_right  # deterministic
    assert from_array.as_dict()["mu_right_low"] == from_array.uncertainty["mu_right"][0]
    held = fit_spring_block(target, n_steps=STEPS, asymmetry=1.0)
    assert held.asymmetry == 1.0 and held.uncertainty["asymmetry"] == (1.0, 1.0)
    assert held.identified["asymmetry"] is None  # held, not measured
    lo, hi = from_array.uncertainty["mu_left"]
    assert lo <= from_array.mu_left <= hi
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_spring_block([1.0, 0.0])
    with pytest.raises(ValueError, match="must be finite"):
        fit_spring_block([1.0, np.nan, 0.0])
    with pytest.raises(ValueError, match="different first and last"):
        fit_spring_block([1.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="must fall from its first to its last"):
        fit_spring_block([0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="one curve"):
        fit_spring_block(np.ones((2, 5)), trajectory=False)
    with pytest.raises(ValueError, match="different first and last"):  # 2-D: a trajectory
        fit_spring_block(np.ones((2, 5)))
    # a frame's logits row is found by `is_logits`, a record's log_d may be an array
    frame["is_logits"] = [False] * (L + 1) + [True]
    assert fit_spring_block(frame, n_steps=STEPS).mu_right == from_array.mu_right
    assert fit_spring_block({"log_d": np.array([*target, logits])},
                            n_steps=STEPS).mu_right == from_array.mu_right
    with pytest.raises(ValueError, match="`order` must be one of"):
        fit_spring_block(target, order=3)
    with pytest.raises(ValueError, match="'log_d'"):
        fit_spring_block({"test_acc": 0.9})


def _sweep_table():
    """A fake sweep whose cell curves are chain curves: friction grows with 1 − α."""
    rows = []
    for slope, mu in ((0.0, 0.4), (0.5, 0.1), (1.0, 0.02)):
        for noise, eps in ((0.0, 0.02), (0.3, 0.1), (0.6, 0.4)):
            curve = chain_target(mu, 1.0, eps)
            for seed in (1, 2):
                rows.append({"slope": slope, "noise": noise, "seed": seed, "status": "ok",
                             "test_acc": 0.9, "log_d": [*curve, 0.0]})
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_fit_sweep_and_the_analogy_correlations(tmp_path, capsys):
    table = _sweep_table()
    fits = fit_sweep(table, n_seeds=4, asymmetry=1.0)
    assert len(fits) == 9 and fits["chain_mu_right"].notna().all()
    corr = analogy_correlations(fits, "noise")
    assert corr["friction"]["rho"] > 0.5 and corr["friction"]["n"] == 9
    assert -1 <= corr["shaking"]["rho"] <= 1
    plot_fit_maps(fits, "noise", title="fake")
    # the command line: table, correlations, figure
    source = tmp_path / "fake.csv"
    from dnn_spring.sweep._store import save_table

    save_table(table, source)
    assert cli_main(["fit", str(source), "--asymmetry", "1", "--no-progress",
                     "--out", str(tmp_path / "fit.csv"), "--figure", str(tmp_path / "fit.png")]) == 0
    out = capsys.readouterr().out
    assert "fitted friction vs 1 - slope: Spearman rho" in out
    assert (tmp_path / "fit.png").stat().st_size > 0
    saved = json.loads((tmp_path / "fit.json").read_text())
    assert saved["axis"] == "noise" and set(saved) >= {"friction", "shaking"}
    assert cli_main(["fit", str(tmp_path / "missing")]) == 2


def test_the_langevin_chain_can_be_fitted_too():
    from dnn_spring.spring import LangevinConfig
    from dnn_spring.spring.langevin import simulate_langevin_batch

    steps = 2000
    truth = {"mu_right": 0.003, "asymmetry": 4 / 3, "noise": 0.003}  # docs/science.md#chains reference values
    config = LangevinConfig(n_blocks=L, mu_right=0.003, mu_left=0.004, noise=0.003,
                            t_max=steps * LangevinConfig.dt)
    made = simulate_langevin_batch([config] * 8, seed=list(range(100, 108)), record_every=steps)
    fit = fit_spring_block(made.curves.mean(0), order=2, n_steps=steps)
    assert fit.order == 2 and fit.residual < 0.05
    for param, value in truth.items():
        low, high = fit.uncertainty[param]
        assert low <= value <= high, (param, value, (low, high))
