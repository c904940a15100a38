"""Tests of dnn_spring.train._run: noise, optimisers, records, determinism, divergence."""

import json
import math

import pytest
import torch

from dnn_spring.train._config import RunConfig
from dnn_spring.train._optim import GroupOptimizer
from dnn_spring.train import _rng as rng
from dnn_spring.train._rules import resolve_device
from dnn_spring.train._run import train_run


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = RunConfig().replace(depth=4, width=32, epochs=3, batch_size=256)


# ------------------------------------------------------------------ noise


def test_noise_resets_labels_and_perturbs_inputs_at_rate_p():
    n, c, p, std = 200_000, 10, 0.3, 2.0
    x = torch.zeros(n, 4)
    y = torch.zeros(n, dtype=torch.long)
    keys = rng.member_keys([1], "cpu")
    xn, yn = rng.epoch_samples(x, y, keys, 1, shuffle=False, noise=[p], x_std=std,
                                   n_classes=c)
    xn, yn = xn[0], yn[0]
    # a reset label hits the true class 1/c of the time
    changed = (yn != y).double().mean().item()
    assert changed == pytest.approx(p * (1 - 1 / c), abs=4 * math.sqrt(0.27 * 0.73 / n))
    counts = torch.bincount(yn[yn != 0], minlength=c)[1:].double()
    assert (counts / counts.mean() - 1).abs().max() < 0.05  # new labels uniform
    assert xn.std().item() == pytest.approx(p * std, rel=0.01)
    assert xn.mean().item() == pytest.approx(0.0, abs=0.01)


def test_noise_zero_is_identity_and_seeded():
    x, y = torch.randn(50, 3), torch.randint(0, 5, (50,))
    keys = rng.member_keys([3], "cpu")
    xn, yn = rng.epoch_samples(x, y, keys, 1, shuffle=False, noise=[0.0], x_std=1.0,
                                   n_classes=5)
    assert torch.equal(xn[0], x) and torch.equal(yn[0], y)
    a = rng.epoch_samples(x, y, keys, 2, shuffle=True, noise=[0.5], x_std=1.0, n_classes=5)
    b = rng.epoch_samples(x, y, keys, 2, shuffle=True, noise=[0.5], x_std=1.0, n_classes=5)
    c = rng.epoch_samples(x, y, keys, 3, shuffle=True, noise=[0.5], x_std=1.0, n_classes=5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])  # every epoch its own draws


# ------------------------------------------------------------------ optimisers


def _torch_reference(kind, lr, wd, steps, grads, p0):
    q = p0.clone().requires_grad_()
    opt = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[kind]([q], lr=lr, weight_decay=wd)
    for g in grads:
        q.grad = g.clone()
        opt.step()
    return q.detach()


@pytest.mark.parametrize("kind", ["adam", "sgd"])
@pytest.mark.parametrize("fused", [True, False])
def test_optimizer_matches_torch_per_member_lr(kind, fused, monkeypatch):
    if not fused:
        monkeypatch.delattr(torch, "_fused_adam_", raising=False)
    gen = torch.Generator().manual_seed(0)
    lrs, wd = [1e-3, 1e-3, 5e-2], 0.01
    p0 = torch.randn(3, 4, 5, generator=gen)
    grads = [torch.randn(3, 4, 5, generator=gen) for _ in range(4)]
    mine = p0.clone()
    opt = GroupOptimizer(kind, [mine], lrs, weight_decay=wd)
    for g in grads:
        opt.step([g.transpose(1, 2).contiguous().transpose(1, 2)])  # non-contiguous on purpose
    for i, lr in enumerate(lrs):
        ref = _torch_reference(kind, lr, wd, 4, [g[i] for g in grads], p0[i])
        torch.testing.assert_close(mine[i], ref, rtol=1e-5, atol=1e-7)


def test_sgld_noise_has_langevin_scale():
    lr, temp, n = 1e-2, 0.5, 100_000
    p = torch.zeros(2, n)
    keys = rng.member_keys([0, 1], "cpu")["langevin"]
    opt = GroupOptimizer("sgld", [p], [lr, 4 * lr], temperatures=[temp, temp], keys=keys)
    opt.step([torch.zeros(2, n)])
    assert p[0].std().item() == pytest.approx(math.sqrt(2 * lr * temp), rel=0.02)
    assert p[1].std().item() == pytest.approx(math.sqrt(8 * lr * temp), rel=0.02)


def test_psgld_preconditions_by_gradient_scale():
    p = torch.zeros(1, 2)
    opt = GroupOptimizer("psgld", [p], [1e-3], temperatures=[0.0],
                           keys=rng.member_keys([0], "cpu")["langevin"])
    opt.step([torch.tensor([[1.0, 100.0]])])
    # RMSprop-like: both coordinates move by about the same amount
    assert p[0, 0].item() == pytest.approx(p[0, 1].item(), rel=1e-3)
    assert p[0, 0].item() < 0


# ------------------------------------------------------------------ runs


def test_record_has_every_key_and_is_json():
    rec = train_run(TINY.replace(curve_every=1))
    for key in ("status", "error", "stop_reason", "epochs_run", "train_loss", "train_acc",
                "test_acc", "layers", "log_d", "log_inv_d", "log_trace_ratio", "v", "c", "c_rel",
                "fit_slope", "fit_r2", "regime", "hessian_top", "hessian_trace", "trajectory",
                "wall_time", "device", "version", "key", "slope", "seed"):
        assert key in rec
    assert rec["status"] == "ok" and rec["key"] == TINY.replace(curve_every=1).key()
    assert len(rec["log_d"]) == len(rec["layers"]) == TINY.model.depth + 1
    assert 0 <= rec["test_acc"] <= 1
    assert [t["epoch"] for t in rec["trajectory"]] == [0, 1, 2, 3]
    json.dumps(rec, allow_nan=False)


def test_same_seed_same_record_every_noise_source_on():
    cfg = TINY.replace(noise=0.3, dropout=0.1, batch_size=100, seed=7)
    a, b = train_run(cfg), train_run(cfg)
    a.pop("wall_time"), b.pop("wall_time")
    assert a == b
    c = train_run(cfg.replace(seed=8))
    assert c["train_loss"] != a["train_loss"]


def test_huge_learning_rate_diverges_without_exception():
    rec = train_run(TINY.replace(optimizer="sgd", lr=1e6, epochs=20))
    assert rec["status"] == "diverged" and rec["stop_reason"] == "diverged"
    assert rec["log_d"] == [] and rec["epochs_run"] < 20
    json.dumps(rec, allow_nan=False)


def test_early_stop_on_loss():
    rec = train_run(TINY.replace(stop_loss=10.0))
    assert rec["stop_reason"] == "loss" and rec["epochs_run"] == 1


@pytest.mark.parametrize("opt", ["sgld", "psgld"])
def test_langevin_runs_are_ok(opt):
    rec = train_run(TINY.replace(optimizer=opt, lr=1e-2, temperature=1e-6))
    assert rec["status"] == "ok"


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_unexpected_error_gives_failed_record(monkeypatch, arch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr("dnn_spring.train._group.load_dataset", boom)  # both archs train there
    rec = train_run(TINY.replace(arch=arch))
    assert rec["status"] == "failed" and rec["error"] == "RuntimeError: disk on fire"


def test_hessian_numbers_when_asked():
    rec = train_run(TINY.replace(hessian=True, epochs=2))
    assert rec["hessian_top"] > 0 and math.isfinite(rec["hessian_trace"])


def test_cnn_run():
    cfg = RunConfig().replace(arch="cnn", depth=3, channels=4, epochs=2, dropout=0.1,
                              curve_every=2, n_train=200)
    rec = train_run(cfg)
    assert rec["status"] == "ok", rec["error"]
    assert len(rec["log_d"]) == 4 and rec["trajectory"][-1]["epoch"] == 2
    again = train_run(cfg)
    assert again["log_d"] == rec["log_d"]  # dropout seeded without touching global state


def test_bad_arguments():
    with pytest.raises(TypeError, match="RunConfig"):
        train_run({"slope": 0})
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            train_run(TINY, device="cuda")
    assert resolve_device("auto").type in ("cpu", "cuda")


@pytest.mark.slow
def test_phase_diagram_corners_on_digits():
    """The phase diagram's corners (docs/science.md) on the default digits run (100 epochs, full batch, Adam 1e-3).

    ReLU without noise is concave (c < 0); linear (α = 1) with data noise
    0.8 is clearly less concave.  Two 100-epoch runs: ~10 s on one core.
    """
    relu = train_run(RunConfig().replace(slope=0.0, noise=0.0))
    linear = train_run(RunConfig().replace(slope=1.0, noise=0.8))
    assert relu["c"] < 0 and relu["regime"] == "concave"
    assert linear["c"] > relu["c"] + 0.5
    assert linear["c_rel"] > -0.5
    assert relu["test_acc"] > 0.9


# ------------------------------------------------------------------ divergence


def test_large_sgd_step_diverges_and_is_never_ok():
    from dnn_spring.train._rules import DIVERGENCE_FACTOR, DIVERGENCE_PATIENCE

    cfg = RunConfig().replace(optimizer="sgd", lr=50, epochs=20, depth=4, width=32)
    rec = train_run(cfg)
    assert rec["status"] == "diverged" and rec["stop_reason"] == "diverged"
    # the loss blew up: far above 10 log C (C = 10 digits) for the patience epochs
    assert rec["train_loss"] is None or rec["train_loss"] > 100 * DIVERGENCE_FACTOR * math.log(10)
    assert DIVERGENCE_PATIENCE <= rec["epochs_run"] < 20
    assert rec["log_d"] == [] and rec["test_acc"] is None and rec["error"] is None
    json.dumps(rec, allow_nan=False)


def _poison_after_first_epoch(monkeypatch):
    """Make one weight NaN after the first epoch; that epoch's loss stays finite."""
    from dnn_spring.train import _group as batched

    original = batched.GroupLoop.run_epoch

    def epoch(self):
        means = original(self)
        self.model.weights.flat[0, 0] = float("nan")
        return means

    monkeypatch.setattr(batched.GroupLoop, "run_epoch", epoch)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_non_finite_weights_are_diverged_not_failed(monkeypatch, arch):
    cfg = TINY if arch == "mlp" else RunConfig().replace(arch="cnn", depth=3, channels=4,
                                                         epochs=3, n_train=200)
    _poison_after_first_epoch(monkeypatch)
    rec = train_run(cfg)
    assert rec["status"] == "diverged" and rec["stop_reason"] == "diverged", rec["error"]
    assert rec["epochs_run"] == 1 and math.isfinite(rec["train_loss"])  # the loss was fine
    assert rec["error"] is None and rec["log_d"] == []


def test_nan_loss_is_diverged_not_failed():
    # the first step sends every weight to ~1e37; the second epoch's loss is NaN
    rec = train_run(TINY.replace(optimizer="sgd", lr=3e38, epochs=2, batch_size=0))
    assert rec["status"] == "diverged" and rec["stop_reason"] == "diverged", rec["error"]
    assert rec["epochs_run"] == 2 and rec["train_loss"] is None


def test_stop_reason_covers_every_branch():
    from dnn_spring.train._config import TrainConfig
    from dnn_spring.train._rules import DIVERGENCE_FACTOR, DIVERGENCE_PATIENCE, stop_reason

    assert (DIVERGENCE_FACTOR, DIVERGENCE_PATIENCE) == (10.0, 3)
    t = TrainConfig(stop_loss=1e-3, stop_delta=1e-6)
    huge = 100.0  # above 10 log 10
    # non-finite loss or weights
    for mean in (float("nan"), float("inf"), -float("inf")):
        assert stop_reason(mean, 1.0, t) == "diverged"
    assert stop_reason(0.5, 0.6, t, finite=False) == "diverged"
    assert stop_reason(1e-6, 1e-6, t, finite=False) == "diverged"  # before loss or plateau
    # above the threshold: patience, last epoch, plateau
    for above in range(1, DIVERGENCE_PATIENCE):
        assert stop_reason(huge, huge / 2, t, epochs_above=above) is None  # may recover
    assert stop_reason(huge, huge / 2, t, epochs_above=DIVERGENCE_PATIENCE) == "diverged"
    assert stop_reason(huge, huge / 2, t, epochs_above=DIVERGENCE_PATIENCE + 5) == "diverged"
    assert stop_reason(huge, None, t, epochs_above=1, last=True) == "diverged"
    assert stop_reason(huge, huge, t, epochs_above=1) == "diverged"  # stuck up there
    assert stop_reason(huge, huge + 1e-7, t, epochs_above=2) == "diverged"
    # below the threshold: the ordinary rule
    assert stop_reason(1e-4, 0.5, t) == "loss"
    assert stop_reason(1e-4, 1e-4, t) == "loss"  # the loss rule first
    assert stop_reason(0.5, 0.5 + 1e-7, t) == "plateau"
    assert stop_reason(0.5, 0.6, t) is None
    assert stop_reason(0.5, None, t) is None  # first epoch: no plateau yet
    assert stop_reason(0.5, 0.6, t, last=True) is None  # the caller says "epochs"
    assert stop_reason(huge, huge / 2, t) is None  # epochs_above counts, not the loss itself


def test_blow_up_in_the_last_update_is_diverged_not_failed():
    # lr 1e30: the one update leaves finite weights (~1e37) and a finite epoch
    # loss, but the evaluation's forward pass overflows.  "failed" would be
    # retried by every sweep rerun; the run has blown up, so it is final.
    rec = train_run(RunConfig().replace(optimizer="sgd", lr=1e30, epochs=1, depth=4, width=32))
    assert rec["status"] == "diverged" and rec["stop_reason"] == "diverged"
    assert "NaN or inf" in rec["error"]
