"""Spring–block chains: configs, exactness against references, physics."""

from __future__ import annotations

import numpy as np
import pytest

from dnn_spring.spring import (
    BACKENDS,
    FirstOrderConfig,
    LangevinConfig,
    chain_curve,
    evenness,
    euler_maruyama_step,
    simulate_first_order,
    simulate_first_order_batch,
    simulate_langevin,
    simulate_langevin_batch,
)


# --------------------------------------------------------------------- configs
def test_config_defaults_are_the_spec_references():
    fo, lg = FirstOrderConfig(), LangevinConfig()
    assert (fo.n_blocks, fo.k, fo.eta, fo.noise, fo.mu_right, fo.mu_left, fo.n_steps) == (
        7, 1.0, 0.01, 0.1, 0.1, 0.1, 10_000)
    assert (lg.n_blocks, lg.mass, lg.gamma, lg.k, lg.noise, lg.decay) == (7, 1, 1, 0.1, 0.003, 0.001)
    assert (lg.dt, lg.t_max, lg.mu_right, lg.mu_left, lg.noise_mode) == (0.05, 700, 0.003, 0.004, "shared")
    assert lg.n_steps == 14_000


@pytest.mark.parametrize(
    "cls, field, value, message",
    [
        (FirstOrderConfig, "k", -1.0, r"`k` must be > 0, got -1.0"),
        (FirstOrderConfig, "n_blocks", 1, r"`n_blocks` must be >= 2, got 1"),
        (FirstOrderConfig, "eta", 0.0, r"`eta` must be > 0, got 0.0"),
        (FirstOrderConfig, "n_steps", 2.5, r"`n_steps` must be an integer, got 2.5"),
        (LangevinConfig, "mu_left", -0.1, r"`mu_left` must be >= 0, got -0.1"),
        (LangevinConfig, "noise", float("nan"), r"`noise` must be a real number, got nan"),
        (LangevinConfig, "noise_mode", "both", r"`noise_mode` must be one of \{.*\}, got 'both'"),
        (LangevinConfig, "t_max", 0.01, r"`t_max` must be at least one step"),
    ],
)
def test_config_errors_name_param_rule_and_value(cls, field, value, message):
    with pytest.raises(ValueError, match=message):
        cls(**{field: value})


def test_config_lists_every_bad_field_at_once():
    with pytest.raises(ValueError, match=r"`k`.*; `mass`"):
        LangevinConfig(k=0.0, mass=-1.0)


def test_configs_are_frozen_and_replace_validates():
    cfg = LangevinConfig()
    with pytest.raises(Exception):
        cfg.k = 2.0  # frozen
    assert cfg.replace(k=0.2).k == 0.2
    with pytest.raises(ValueError, match="`gamma` must be >= 0"):
        cfg.replace(gamma=-1.0)


def test_unknown_backend_and_method_are_rejected():
    with pytest.raises(ValueError, match=r"`backend` must be one of \{.*\}, got 'jax'"):
        simulate_langevin(LangevinConfig(t_max=1.0), backend="jax", seed=0)
    with pytest.raises(ValueError, match=r"`method` must be one of \{.*\}, got 'rk4'"):
        simulate_langevin(LangevinConfig(t_max=1.0), backend="sdeint", method="rk4", seed=0)
    assert set(BACKENDS) == {"numpy", "torch", "sdeint"}


def test_batch_rejects_mixed_shapes():
    with pytest.raises(ValueError, match="`n_blocks` must be the same"):
        simulate_langevin_batch([LangevinConfig(t_max=1.0), LangevinConfig(t_max=1.0, n_blocks=3)])


# ------------------------------------------------------------ first order: exact
def _first_order_loop(cfg: FirstOrderConfig, seed: int) -> np.ndarray:
    """docs/science.md#chains transcribed literally: plain loops, one draw per step."""
    rng = np.random.default_rng(seed)
    n = cfg.n_blocks
    x = [0.0] * n
    for _ in range(cfg.n_steps):
        xi = rng.normal(0.0, 1.0, n if cfg.noise_mode == "per_block" else 1)
        new = list(x)
        for ell in range(n):
            left = x[ell - 1] if ell > 0 else 0.0
            right = x[ell + 1] if ell < n - 1 else cfg.y
            force = cfg.k * ((right - x[ell]) - (x[ell] - left))
            g = force + cfg.noise * (xi[ell] if cfg.noise_mode == "per_block" else xi[0])
            mu = cfg.mu_left if g < 0 else cfg.mu_right
            new[ell] = x[ell] + cfg.eta * np.sign(g) * max(abs(g) - mu, 0.0)
        x = new
    return np.array(x)


@pytest.mark.parametrize("mode", ["per_block", "shared"])
def test_first_order_matches_loop_transcription_exactly(mode):
    cfg = FirstOrderConfig(n_blocks=5, n_steps=400, noise=0.3, mu_right=0.05, mu_left=0.12,
                           k=1.3, y=0.8, noise_mode=mode)
    result = simulate_first_order(cfg, seed=11, record_every=1)
    np.testing.assert_array_equal(result.final, _first_order_loop(cfg, 11))
    assert result.trajectory.shape == (401, 5)
    np.testing.assert_array_equal(result.trajectory[0], 0.0)


def test_first_order_batch_chain_equals_its_single_run():
    cfgs = [FirstOrderConfig(n_steps=300, noise=e, mu_left=0.1 + e) for e in (0.0, 0.2, 0.5)]
    batch = simulate_first_order_batch(cfgs, seed=[4, 5, 6], record_every=50)
    assert batch.trajectory.shape == (3, 7, 7)
    for i, cfg in enumerate(cfgs):
        single = simulate_first_order(cfg, seed=4 + i, record_every=50)
        np.testing.assert_array_equal(batch.final[i], single.final)
        np.testing.assert_array_equal(batch.trajectory[i], single.trajectory)


def test_same_seed_same_numbers_and_generator_accepted():
    cfg = FirstOrderConfig(n_steps=200)
    a = simulate_first_order(cfg, seed=3)
    b = simulate_first_order(cfg, seed=np.random.default_rng(3))
    np.testing.assert_array_equal(a.final, b.final)
    assert a.seed == 3 and b.seed is None
    int_seed = simulate_first_order_batch([cfg] * 2, seed=7)
    assert int_seed.seeds == ("7/0", "7/1")
    assert not np.array_equal(int_seed.final[0], int_seed.final[1])


# ------------------------------------------------------------- langevin: exact
@pytest.mark.parametrize("mode", ["shared", "per_block"])
def test_numpy_backend_reproduces_sdeint_itoeuler_path(mode):
    # Same seed -> same Wiener increments -> the very same Euler-Maruyama path.
    cfg = LangevinConfig(t_max=20.0, noise=0.01, noise_mode=mode)
    fast = simulate_langevin(cfg, seed=5, record_every=1)
    ref = simulate_langevin(cfg, seed=5, backend="sdeint", method="itoEuler", record_every=1)
    np.testing.assert_array_equal(fast.trajectory, ref.trajectory)
    np.testing.assert_array_equal(fast.velocity, ref.velocity)
    assert ref.backend == "sdeint.itoEuler"


def test_torch_backend_matches_numpy_without_noise():
    cfg = LangevinConfig(t_max=30.0, noise=0.0, mu_right=0.002, mu_left=0.005)
    a = simulate_langevin(cfg, seed=0)
    b = simulate_langevin(cfg, seed=0, backend="torch", device="cpu")
    np.testing.assert_allclose(a.trajectory, b.trajectory, atol=1e-12)


def test_result_curve_loads_and_stats():
    res = simulate_langevin(LangevinConfig(t_max=10.0), seed=0, record_every=7)
    assert res.times[0] == 0 and res.times[-1] == pytest.approx(10.0)
    assert res.trajectory.shape == (len(res.times), 7)
    assert res.curve.shape == (8,) and res.curve[0] == 1.0
    np.testing.assert_allclose(res.curve, 1.0 - np.concatenate([[0], res.final]))
    np.testing.assert_allclose(res.loads, np.diff(np.concatenate([[0], res.final])))
    assert res.extensions.shape == (8,) and res.extensions.sum() == pytest.approx(1.0)
    assert res.stats.loads == pytest.approx(tuple(res.loads))
    record = res.as_dict()
    assert record["order"] == 2 and record["regime"] == res.stats.regime and record["seed"] == 0
    np.testing.assert_allclose(chain_curve(res.final[None], [1.0])[0], res.curve)


def test_evenness():
    assert evenness([0.2, 0.2, 0.2]) == pytest.approx(1.0)
    assert evenness([0.0, 0.0, 0.6]) == pytest.approx(0.0)
    assert 0 < evenness([0.1, 0.2, 0.3]) < 1


# --------------------------------------------------------------------- physics
def test_no_friction_no_noise_gives_equal_extensions():
    fo = simulate_first_order(FirstOrderConfig(noise=0.0, mu_right=0.0, mu_left=0.0), seed=0)
    np.testing.assert_allclose(fo.extensions, 1.0 / 8, atol=1e-6)
    lg = simulate_langevin(LangevinConfig(noise=0.0, mu_right=0.0, mu_left=0.0), seed=0)
    np.testing.assert_allclose(lg.extensions, 1.0 / 8, atol=1e-3)
    assert fo.stats.regime == lg.stats.regime == "linear"


def test_friction_without_noise_moves_deep_blocks_first_concave():
    res = simulate_first_order(FirstOrderConfig(noise=0.0), seed=0, record_every=1)
    # the pulled end's neighbour moves first, shallow blocks never move
    first_move = [int(np.argmax(res.trajectory[:, ell] > 0)) for ell in (6, 5, 4)]
    assert 0 < first_move[0] < first_move[1] < first_move[2]
    np.testing.assert_array_equal(res.final[:4], 0.0)
    assert res.stats.regime == "concave" and res.stats.c < 0
    lg = simulate_langevin(LangevinConfig(noise=0.0, mu_right=0.02, mu_left=0.02), seed=0)
    assert lg.stats.regime == "concave"
    assert lg.loads[-1] > lg.loads[0]


def test_noise_makes_loads_more_even():
    quiet = simulate_first_order(FirstOrderConfig(noise=0.0), seed=0)
    noisy = simulate_first_order_batch([FirstOrderConfig(noise=0.3)] * 4, seed=1)
    v_noisy = np.mean([noisy[i].stats.v for i in range(4)])
    assert v_noisy < 0.5 * quiet.stats.v
    assert np.mean([noisy[i].evenness for i in range(4)]) > quiet.evenness


def test_asymmetric_friction_and_strong_noise_is_convex():
    fo = simulate_first_order_batch(
        [FirstOrderConfig(noise=0.5, mu_right=0.01, mu_left=0.06)] * 4, seed=2)
    assert np.mean([fo[i].stats.c for i in range(4)]) > 0
    assert fo[0].stats.regime == "convex"
    lg = simulate_langevin(LangevinConfig(noise=0.01, mu_right=0.001, mu_left=0.006), seed=3)
    assert lg.stats.regime == "convex"


def test_fast_loop_is_the_reference_euler_maruyama_step():
    # the readable solver step, iterated by hand with sdeint's increments,
    # gives the path of the optimised batch loop
    cfg = LangevinConfig(t_max=3.0, noise=0.02, mu_right=0.01, mu_left=0.03, decay=0.1)
    fast = simulate_langevin(cfg, seed=9, record_every=1)
    params = {name: np.array([[float(getattr(cfg, name))]]) for name in
              ("k", "mass", "gamma", "y", "mu_right", "mu_left", "noise", "decay")}
    tspan = np.arange(cfg.n_steps + 1) * cfg.dt
    h = (tspan[-1] - tspan[0]) / cfg.n_steps
    dw = np.random.default_rng(9).normal(0.0, np.sqrt(h), (cfg.n_steps, 1))
    x, v = np.zeros((1, 7)), np.zeros((1, 7))
    for n in range(cfg.n_steps):
        x, v = euler_maruyama_step(x, v, tspan[n], dw[n][None], h, params)
        np.testing.assert_allclose(x[0], fast.trajectory[n + 1], rtol=0, atol=1e-15)


def test_a_simulation_too_large_for_memory_is_refused_up_front():
    tiny_dt = LangevinConfig(dt=1e-7)  # 7e9 steps: the time grid alone is 52 GiB
    with pytest.raises(ValueError, match=r"the simulation would need 52\.2 GiB of memory for "
                       r"7,000,000,000 steps of 1 chain \(limit 4 GiB\); take fewer steps \(a "
                       r"larger `dt` or a smaller `t_max`: n_steps = t_max / dt\)"):
        simulate_langevin(tiny_dt, seed=0)
    with pytest.raises(ValueError, match=r"record fewer points \(a larger `record_every` than 1\)"):
        simulate_first_order_batch([FirstOrderConfig(n_steps=10**8)] * 8, seed=0, record_every=1)
    with pytest.raises(ValueError, match=r"12\.7 GiB of memory for 100,000,000 steps of 1 chain"):
        simulate_langevin(LangevinConfig(dt=1e-5, t_max=1000.0), backend="sdeint", seed=0)


def test_cli_too_large_simulation_is_one_line(capsys):
    from dnn_spring.cli import main

    assert main(["spring", "simulate", "--dt", "1e-7", "--out", ""]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dnn-spring spring: error: the simulation "
                                                   "would need 52.2 GiB")
