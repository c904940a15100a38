"""The chain fitted to a whole trajectory: inputs, and recovery of known chains.

The targets are made by the chain itself, with known friction, noise and
clock, from 32 seeds that the fit does not use (the fit averages seeds
0..7), and mapped affinely as a network's log D would be.  They check what
the trajectory fit recovers and, for a pair of chains whose final curves
have the same shape, what the final-curve fit cannot tell apart.
"""

import json

import numpy as np
import pandas as pd
import pytest

from dnn_spring.spring import (FirstOrderConfig, fit_spring_block, fit_spring_block_trajectory,
                               simulate_first_order_batch, sweep_scale)
from dnn_spring.spring.fit_trajectory import SCALES, as_trajectory

EPOCHS = np.arange(26) * 4  # a run of 100 epochs with curve_every=4
FIT = {"asymmetry": 1.0, "n_seeds": 8}


def chain_made(mu, noise, scale, *, seeds=range(100, 132)):
    """Mean curves (26, 8) of chains with these parameters, read at ``scale`` of the horizon."""
    configs = [FirstOrderConfig(n_blocks=7, mu_right=mu, mu_left=mu, noise=noise)] * len(seeds)
    result = simulate_first_order_batch(configs, seed=list(seeds), record_every=10)
    x = result.trajectory.mean(0)
    at = scale * result.times[-1] * EPOCHS / EPOCHS[-1]
    xs = np.stack([np.interp(at, result.times, x[:, b]) for b in range(7)], axis=1)
    curve = 1.0 - np.concatenate([np.zeros((len(EPOCHS), 1)), xs], axis=1)
    return 3.0 * curve - 1.0  # any affine map: log D lives on another scale


def inside(value, interval):
    low, high = interval
    return low <= value <= high


# (friction, noise, clock) of chains the trajectory fit must pin down
IDENTIFIED = {"lazy": (0.236, 0.041, 0.5), "between": (0.1, 0.1, 0.2)}
# chains whose small friction it must bound from above
LOW_FRICTION = {"active": (0.0343, 0.332, 0.05), "linear": (0.0081, 0.02, 0.05)}


@pytest.mark.parametrize("name", sorted(IDENTIFIED))
@pytest.mark.slow
def test_a_known_chain_is_recovered_from_its_trajectory(name):
    mu, noise, scale = IDENTIFIED[name]
    fit = fit_spring_block_trajectory(chain_made(mu, noise, scale), times=EPOCHS, scale=scale,
                                      **FIT)
    assert fit.identified["mu_right"] and fit.identified["noise"]
    assert inside(mu, fit.uncertainty["mu_right"]), (mu, fit.uncertainty)
    assert inside(noise, fit.uncertainty["noise"]), (noise, fit.uncertainty)
    assert fit.residual < 0.01


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LOW_FRICTION))
def test_a_low_friction_chain_gets_an_upper_bound_on_friction(name):
    mu, noise, scale = LOW_FRICTION[name]
    fit = fit_spring_block_trajectory(chain_made(mu, noise, scale), times=EPOCHS, scale=scale,
                                      **FIT)
    low, high = fit.uncertainty["mu_right"]
    assert low <= mu <= high < 0.1  # below the lazy chain's friction interval
    assert inside(noise, fit.uncertainty["noise"])


@pytest.mark.slow
def test_a_pair_with_one_final_shape_is_told_apart_only_by_its_trajectory():
    # little friction, almost no shaking / much friction, much shaking: the same final curve
    calm, shaken = chain_made(0.0343, 0.005, 1.0), chain_made(1.0, 0.56, 1.0)
    final = [fit_spring_block(c[-1], **FIT) for c in (calm, shaken)]
    gap = np.sqrt(np.mean((final[0].target[1:-1] - final[1].target[1:-1]) ** 2) /
                  (final[0].target[0] - final[0].target[-1]) ** 2)
    assert gap < 0.05  # the final curves have one shape (within rounding of seeds)
    # the final-curve fit: neither friction is bounded above; both intervals hold both chains
    for fit in final:
        assert fit.uncertainty["mu_right"][1] == float("inf")
        assert inside(0.0343, fit.uncertainty["mu_right"]) and inside(1.0, fit.uncertainty["mu_right"])
    calm_fit, shaken_fit = (fit_spring_block_trajectory(c, times=EPOCHS, scale=1.0, **FIT)
                            for c in (calm, shaken))
    assert calm_fit.identified["mu_right"]
    assert inside(0.0343, calm_fit.uncertainty["mu_right"])
    assert inside(1.0, shaken_fit.uncertainty["mu_right"])
    assert calm_fit.uncertainty["mu_right"][1] < shaken_fit.uncertainty["mu_right"][0]
    assert shaken_fit.identified["noise"] and inside(0.56, shaken_fit.uncertainty["noise"])
    assert calm_fit.uncertainty["noise"][1] < shaken_fit.uncertainty["noise"][0]


def test_one_clock_for_a_sweep_is_recovered():
    cells = [chain_made(mu, eps, 0.2, seeds=range(100, 116))
             for mu, eps in [(0.236, 0.041), (0.1, 0.1), (0.0343, 0.005), (1.0, 0.56)]]
    scale, profile = sweep_scale([(EPOCHS, c) for c in cells], **FIT)
    assert scale == pytest.approx(0.2, rel=0.15)
    assert profile.shape == SCALES.shape and profile.argmin() == np.abs(np.log(SCALES / 0.2)).argmin()


def test_a_free_clock_keeps_the_truth_inside_its_intervals():
    mu, noise, scale = IDENTIFIED["lazy"]
    fit = fit_spring_block_trajectory(chain_made(mu, noise, scale), times=EPOCHS, **FIT)
    assert inside(mu, fit.uncertainty["mu_right"]) and inside(noise, fit.uncertainty["noise"])
    assert inside(scale, fit.uncertainty["scale"])
    assert fit.curves.shape == (len(EPOCHS), 8)
    # the fitted curves are on the measured scale: they end where the target ends
    assert fit.curves[-1] == pytest.approx(fit.target[-1], abs=0.1)


def record_with(curves, epochs=EPOCHS):
    logits = curves[:, -1:] + 0.5
    return {"status": "ok", "log_d": [*curves[-1], logits[-1, 0]],
            "trajectory": [{"epoch": int(e), "log_d": [*c, float(l[0])]}
                           for e, c, l in zip(epochs, curves, logits)]}


@pytest.mark.slow
def test_a_record_a_history_and_an_array_give_one_trajectory():
    curves = chain_made(0.1, 0.1, 0.2)
    record = record_with(curves)
    history = pd.DataFrame([{"measurement": m, "epoch": int(e), "point": p, "log_d": v,
                             "is_logits": p == 8}
                            for m, (e, row) in enumerate(zip(EPOCHS, curves))
                            for p, v in enumerate([*row, 9.0])])
    for source in (record, json.loads(json.dumps(record)), history):
        times, got = as_trajectory(source)
        np.testing.assert_array_equal(times, EPOCHS)
        np.testing.assert_allclose(got, curves)  # the logits point left out
    a = fit_spring_block(record, trajectory=True, scale=0.2, **FIT)
    b = fit_spring_block(curves, times=EPOCHS, scale=0.2, **FIT)  # 2-D: a trajectory
    c = fit_spring_block(history, scale=0.2, **FIT)
    assert a.mu_right == b.mu_right == c.mu_right and a.noise == b.noise == c.noise
    assert fit_spring_block(record, **FIT).__class__.__name__ == "SpringBlockFit"


@pytest.mark.parametrize("bad, match", [
    (np.zeros((1, 8)), "at least 2 finite"),
    (np.zeros((4, 2)), "at least 3 points"),
    (np.zeros(8), r"shape \(n_times, n_points\)"),
    ({"trajectory": 5}, "list of"),
])
def test_an_unusable_trajectory_is_one_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        fit_spring_block_trajectory(bad)


def test_times_that_do_not_increase_or_a_rising_curve_are_refused():
    curves = chain_made(0.1, 0.1, 0.2)
    with pytest.raises(ValueError, match="times must increase"):
        fit_spring_block_trajectory(curves, times=EPOCHS[::-1])
    with pytest.raises(ValueError, match="must fall"):
        fit_spring_block_trajectory(-curves, times=EPOCHS)
    with pytest.raises(ValueError, match="scale"):
        fit_spring_block_trajectory(curves, times=EPOCHS, scale=2.0)


def _trajectory_sweep():
    """A fake trajectory sweep: friction grows with 1 − α, chain noise with the data noise."""
    rows = []
    for slope, mu in ((0.0, 0.4), (0.5, 0.1), (1.0, 0.02)):
        for noise, eps in ((0.0, 0.02), (0.3, 0.1), (0.6, 0.4)):
            record = record_with(chain_made(mu, eps, 0.2, seeds=range(100, 108)))
            for seed in (1, 2):
                rows.append({"slope": slope, "noise": noise, "seed": seed, "test_acc": 0.9,
                             **record, "trajectory": json.dumps(record["trajectory"])})
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_a_sweep_fitted_on_its_trajectories_and_its_command(tmp_path, monkeypatch, capsys):
    from dnn_spring.cli import main
    from dnn_spring.analysis._chain_fits import analogy_correlations, fit_sweep
    from dnn_spring.sweep._store import save_table

    table = _trajectory_sweep()
    fits = fit_sweep(table, asymmetry=1.0, n_seeds=4, trajectory=True)
    assert len(fits) == 9 and fits["chain_mu_right"].notna().all()
    assert fits["chain_scale"].nunique() == 1  # one clock for the sweep
    assert fits["chain_scale"].iloc[0] == pytest.approx(0.2, rel=0.15)
    corr = analogy_correlations(fits, "noise")
    assert corr["friction"]["rho"] > 0.6 and corr["shaking"]["rho"] > 0, corr
    for key in ("friction", "shaking"):
        assert corr[key]["low"] <= corr[key]["rho"] <= corr[key]["high"]
        assert 0.0 <= corr[key]["identified"] <= 1.0
    # a low-friction chain's noise is loosely bounded, but the truth stays inside
    truth = fits["noise"].map({0.0: 0.02, 0.3: 0.1, 0.6: 0.4})
    assert ((fits["noise_low"] <= truth) & (truth <= fits["noise_high"])).sum() >= 7
    # the command line: the trajectory fits, free and symmetric, do not overwrite each other
    save_table(table, tmp_path / "fake.parquet")
    monkeypatch.chdir(tmp_path)
    for extra in (["--asymmetry", "1"], ["--seeds", "2"]):
        assert main(["fit", "fake.parquet", "--trajectory", "--no-progress", *extra]) == 0
    out = capsys.readouterr().out
    assert "[95%" in out and "time scale" in out
    for name in ("fit_fake_trajectory_symmetric", "fit_fake_trajectory"):
        summary = json.loads((tmp_path / "results" / f"{name}.json").read_text())
        assert summary["trajectory"] is True and summary["fitted"] == 9
        assert (tmp_path / "figs" / f"{name}.png").stat().st_size > 0
    assert json.loads((tmp_path / "results" / "fit_fake_trajectory_symmetric.json").read_text()
                      )["asymmetry"] == 1.0
    assert main(["fit", "fake.parquet", "--trajectory", "--scale", "2"]) == 2


@pytest.mark.slow
def test_animate_takes_the_trajectory_fits_chain(tmp_path):
    from dnn_spring.analysis._animate import animate_chain_and_network, fitted_chain

    record = record_with(chain_made(0.1, 0.1, 0.2, seeds=range(100, 108)))
    fit = fit_spring_block_trajectory(record, asymmetry=1.0)
    chain = fitted_chain(record, trajectory=True)
    assert (chain.mu_right, chain.noise) == (fit.mu_right, fit.noise)
    assert chain.n_steps == round(fit.scale * FirstOrderConfig().n_steps)  # ends with training
    assert fitted_chain(record).n_steps == FirstOrderConfig().n_steps
    out = animate_chain_and_network(chain, record, tmp_path / "run.gif", frames=3)
    assert out.stat().st_size > 0
