"""Batched training: members against separate single runs, freezing, grouping."""

import pytest
import torch

from dnn_spring.train._group import GroupLoop, train_group
from dnn_spring.train._config import RunConfig
from dnn_spring.train._data import load_dataset
from dnn_spring.train._grouping import group_key, max_group_size
from dnn_spring.train._group_mlp import GroupMLP
from dnn_spring.train._run import train_run


pytestmark = pytest.mark.usefixtures("one_thread")


BASE = RunConfig().replace(depth=4, width=32, epochs=4, batch_size=128)
# members differ in every per-member field at once
MEMBERS = [
    BASE.replace(seed=1, slope=0.0, noise=0.2),
    BASE.replace(seed=2, slope=0.5, dropout=0.1, lr=2e-3),
    BASE.replace(seed=3, slope=1.0, lr=5e-4, init="orthogonal", init_scale=0.5),
]
DATA = load_dataset(BASE.data, flatten=True)


def _steps(configs, n_steps):
    fit = GroupLoop(configs, DATA, torch.device("cpu"))
    xe, ye = fit.epoch_data()
    ens = fit.model
    for s in range(n_steps):
        sl = slice(s * 128, (s + 1) * 128)
        ens.step(xe[:, :, sl].contiguous(), ye[:, sl])
    return ens


def _member(ens, name, i):
    return ens.params[name][i] if name in ens.params else ens.buffers[name][i]


def test_members_follow_their_single_runs_step_by_step():
    group = _steps(MEMBERS, 5)
    for i, cfg in enumerate(MEMBERS):
        single = _steps([cfg], 5)
        for name in group.param_names + group.buffer_names:
            assert torch.equal(_member(group, name, i), _member(single, name, 0)), name


def test_batchnorm_running_stats_are_per_member():
    group = _steps(MEMBERS, 3)
    means = group.buffers["blocks.0.bn.running_mean"]
    assert not torch.allclose(means[0], means[1])
    model = group.export(1)
    torch.testing.assert_close(model.blocks[0].bn.running_var, group.buffers["blocks.0.bn.running_var"][1])
    assert int(model.blocks[0].bn.num_batches_tracked) == 3
    # the exported member gives the batched eval forward, running stats included
    x = DATA.x_train[:64]
    model.eval()
    ref = torch.nn.functional.batch_norm(x, group.buffers["input_bn.running_mean"][1],
                                         group.buffers["input_bn.running_var"][1],
                                         group.params["input_bn.weight"][1].detach(),
                                         group.params["input_bn.bias"][1].detach(), False)
    torch.testing.assert_close(model.input_bn(x), ref)


_EXACT = ("status", "stop_reason", "epochs_run", "train_loss", "train_acc", "test_acc", "log_d",
          "log_inv_d", "log_trace_ratio", "c", "regime", "trajectory")


def _outcome(record):
    return {k: record[k] for k in _EXACT}


def test_group_records_equal_single_run_records():
    group = train_group(MEMBERS)
    for rec, cfg in zip(group, MEMBERS):
        single = train_run(cfg, grouped=True)
        assert rec["key"] == single["key"] and rec["status"] == single["status"] == "ok"
        assert _outcome(rec) == _outcome(single)  # bit for bit


# A member with noise, dropout and a non-zero slope, trained alone and at every
# position of groups of 2, 3, 4 and 8 whose other members differ in every
# per-member field.  Epochs of 128 + 128 + ... + 29 samples: the last, odd
# batch once sent odd members through other MKL kernels.
TARGET = BASE.replace(seed=7, slope=0.3, noise=0.2, dropout=0.1, epochs=3, curve_every=3)
OTHERS = [BASE.replace(seed=s, slope=a, noise=0.1 * (s % 3), dropout=0.05 * (s % 2),
                       lr=(1e-3, 2e-3)[s % 2], epochs=3, curve_every=3)
          for s, a in zip(range(10, 17), (0.0, 0.2, 0.5, 1.0, 0.7, 0.1, 0.9))]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("batch_size", [128, 10, 0])
def test_a_member_does_not_depend_on_its_group(size, threads, batch_size):
    target = TARGET.replace(batch_size=batch_size)
    others = [c.replace(batch_size=batch_size) for c in OTHERS]
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        alone = _outcome(train_group([target])[0])
        for pos in sorted({0, size // 2, size - 1}):
            group = others[:size - 1]
            group.insert(pos, target)
            assert _outcome(train_group(group)[pos]) == alone, (size, pos)
    finally:
        torch.set_num_threads(old)
    assert alone["status"] == "ok" and alone["epochs_run"] == 3


@pytest.mark.parametrize("threads", [1, 2])
def test_member_products_do_not_depend_on_the_group(threads):
    from dnn_spring.train._member_ops import member_bmm, member_sum

    gen = torch.Generator().manual_seed(0)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for batch, (fo, fi) in [(7, (10, 100)), (5, (10, 32)), (10, (100, 100)), (11, (32, 64))]:
            x = torch.randn(9, fi, batch, generator=gen)
            w = torch.randn(9, fo, fi, generator=gen)
            g = torch.randn(9, fo, batch, generator=gen)
            b = torch.randn(9, batch, fo, generator=gen)
            ref = None
            for n in (1, 2, 3, 4, 8):
                for pos in range(n):
                    idx = list(range(1, n))
                    idx.insert(pos, 0)
                    xs, ws, gs, bs = (t[idx].contiguous() for t in (x, w, g, b))
                    got = [member_bmm(xs.transpose(1, 2), ws.transpose(1, 2), bs)[pos],
                           member_bmm(gs.transpose(1, 2), ws)[pos],
                           member_bmm(gs, xs.transpose(1, 2))[pos], member_sum(gs)[pos]]
                    ref = ref or got
                    assert all(torch.equal(a, c) for a, c in zip(ref, got)), (batch, n, pos)
            torch.testing.assert_close(ref[0], x[0].T @ w[0].T + b[0])
            torch.testing.assert_close(ref[3], g[0].sum(1, keepdim=True))
    finally:
        torch.set_num_threads(old)


def test_diverging_member_is_frozen_and_others_untouched():
    sgd = BASE.replace(optimizer="sgd", lr=0.05, epochs=6)
    configs = [sgd.replace(seed=1), sgd.replace(seed=2, lr=1e6), sgd.replace(seed=3, slope=0.3)]
    recs = train_group(configs)
    assert [r["status"] for r in recs] == ["ok", "diverged", "ok"]
    assert recs[1]["epochs_run"] < 6 and recs[1]["log_d"] == []
    for rec, cfg in ((recs[0], configs[0]), (recs[2], configs[2])):
        single = train_run(cfg, grouped=True)
        assert rec["epochs_run"] == single["epochs_run"] == 6
        assert _outcome(rec) == _outcome(single)


def test_early_stopped_member_keeps_its_state():
    fast, slow = BASE.replace(seed=1, lr=2e-2, stop_loss=1.0), BASE.replace(seed=2, lr=1e-4, stop_loss=1.0)
    recs = train_group([fast, slow])
    assert recs[0]["stop_reason"] == "loss" and recs[0]["epochs_run"] < 4
    assert recs[1]["stop_reason"] == "epochs" and recs[1]["epochs_run"] == 4
    for rec, cfg in zip(recs, (fast, slow)):
        assert _outcome(rec) == _outcome(train_run(cfg, grouped=True))  # bit for bit


def test_group_key():
    assert group_key(BASE) == group_key(BASE.replace(seed=4, slope=0.4, lr=0.1, noise=0.3,
                                                     dropout=0.2, init="kaiming"))
    assert group_key(BASE) != group_key(BASE.replace(width=64))
    assert group_key(BASE) != group_key(BASE.replace(batch_size=10))
    assert group_key(BASE) != group_key(BASE.replace(arch="cnn"))  # CNN groups: test_stacked_cnn


def test_train_group_checks_its_input():
    with pytest.raises(ValueError, match="width"):
        train_group([BASE, BASE.replace(width=64)])
    with pytest.raises(ValueError, match="at least one"):
        train_group([])
    with pytest.raises(TypeError, match="RunConfig"):
        train_group([BASE, "x"])
    with pytest.raises(ValueError, match="batch_size"):
        train_run(BASE.replace(batch_size=1))


def test_last_batch_of_one_is_skipped_with_batchnorm():
    rec = train_run(BASE.replace(n_train=129, epochs=1))  # batches 128 + 1
    assert rec["status"] == "ok" and rec["epochs_run"] == 1


def test_max_group_size_scales_with_the_model():
    small = max_group_size(BASE, device="cpu")
    big = max_group_size(BASE.replace(width=1000, batch_size=0), device="cpu")
    assert 1 <= big < small
    assert max_group_size(BASE.replace(arch="cnn"), device="cpu") == 1


def test_member_leaky_relu_gradient_matches_autograd():
    from dnn_spring.train._member_ops import MemberLeakyReLU

    x = torch.randn(3, 7, 5, dtype=torch.float64)  # (N, F, B)
    x[:, 0, 0] = 0.0  # the kink: PyTorch takes the negative side
    slope = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn_like(x)
    (ga,) = torch.autograd.grad(MemberLeakyReLU.apply(xa, slope), xa, g)
    ref = torch.stack([torch.nn.functional.leaky_relu(xb[i], float(a)) for i, a in enumerate(slope)])
    (gb,) = torch.autograd.grad(ref, xb, g)
    torch.testing.assert_close(ga, gb)
    torch.testing.assert_close(MemberLeakyReLU.apply(x, slope), ref.detach())


@pytest.mark.parametrize("batch", [10, 300])
def test_losses_and_gradients_match_the_nn_module(batch):
    # Independent reference: each member exported as a plain nn.Module MLP,
    # trained mode, cross-entropy and gradients by ordinary autograd.
    members = [m.replace(dropout=0.0) for m in MEMBERS]
    ens = GroupMLP(members, DATA.x_train.shape[1], DATA.n_classes, torch.device("cpu"))
    models = [ens.export(i).train() for i in range(len(members))]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(len(members), DATA.x_train.shape[1], batch, generator=gen)
    y = torch.randint(DATA.n_classes, (len(members), batch), generator=gen)
    losses = ens.losses(x, y).mean(1)
    grads = torch.autograd.grad(losses.sum(), [ens.params[k] for k in ens.param_names])
    for i, model in enumerate(models):
        loss = torch.nn.functional.cross_entropy(model(x[i].T), y[i])
        torch.testing.assert_close(losses[i], loss, rtol=1e-5, atol=1e-6)
        ref = dict(zip([n for n, _ in model.named_parameters()],
                       torch.autograd.grad(loss, list(model.parameters()))))
        for name, g in zip(ens.param_names, grads):
            torch.testing.assert_close(g[i].reshape(ref[name].shape), ref[name], rtol=1e-4,
                                       atol=1e-6)
        # running statistics moved exactly as nn.BatchNorm1d's
        torch.testing.assert_close(ens.buffers["blocks.1.bn.running_var"][i],
                                   model.blocks[1].bn.running_var, rtol=1e-5, atol=1e-6)


def test_dropout_masks_keep_rate_and_scale():
    ens = GroupMLP([BASE.replace(seed=1, dropout=0.25), BASE.replace(seed=2)],
                     DATA.x_train.shape[1], DATA.n_classes, torch.device("cpu"))
    mult = ens.dropout_masks(4096)  # (L-1, N, width, B)
    kept = mult[:, 0]
    assert kept.unique().tolist() == pytest.approx([0.0, 1 / 0.75])
    assert (kept > 0).float().mean().item() == pytest.approx(0.75, abs=0.005)
    assert torch.equal(mult[:, 1], torch.ones_like(mult[:, 1]))  # p = 0: untouched
    assert torch.equal(mult, ens.dropout_masks(4096))  # a function of the step counter ...
    ens.opt.set_steps(1)
    assert not torch.equal(mult, ens.dropout_masks(4096))  # ... fresh at every step


CKPT_GROUP = [  # an early stopper, dropout, data noise, trajectories: every kind of state
    BASE.replace(seed=1, lr=2e-2, stop_loss=1.0, epochs=6, curve_every=2),
    BASE.replace(seed=2, lr=1e-4, stop_loss=1.0, epochs=6, curve_every=2, dropout=0.1),
    BASE.replace(seed=3, lr=1e-4, stop_loss=1.0, epochs=6, curve_every=2, noise=0.3, slope=0.5),
]
_COMPARED = ("status", "stop_reason", "epochs_run", "train_loss", "train_acc", "test_acc",
             "log_d", "log_inv_d", "c", "trajectory")


def _interrupt_after(monkeypatch, n_epochs):
    calls = []
    original = GroupLoop.run_epoch

    def epoch(self):
        calls.append(1)
        if len(calls) > n_epochs:
            raise RuntimeError("killed")
        return original(self)

    monkeypatch.setattr(GroupLoop, "run_epoch", epoch)
    return calls


def test_killed_group_goes_on_from_its_checkpoint_with_the_same_numbers(tmp_path, monkeypatch):
    reference = train_group(CKPT_GROUP)
    assert reference[0]["stop_reason"] == "loss" and reference[0]["epochs_run"] < 3
    assert [r["epochs_run"] for r in reference[1:]] == [6, 6]
    path = tmp_path / "group.pt"
    _interrupt_after(monkeypatch, 3)
    killed = train_group(CKPT_GROUP, checkpoint=path, checkpoint_every=0)
    assert {r["status"] for r in killed} == {"failed"} and path.exists()
    monkeypatch.undo()
    calls = _interrupt_after(monkeypatch, 99)
    resumed = train_group(CKPT_GROUP, checkpoint=path, checkpoint_every=0)
    assert len(calls) == 3  # epochs 4-6 only
    for ref, rec in zip(reference, resumed):
        assert {k: rec[k] for k in _COMPARED} == {k: ref[k] for k in _COMPARED}


def test_checkpoint_that_fails_late_leaves_the_group_untouched(tmp_path, monkeypatch, caplog):
    path = tmp_path / "group.pt"
    _interrupt_after(monkeypatch, 3)
    train_group(CKPT_GROUP, checkpoint=path, checkpoint_every=0)
    monkeypatch.undo()
    state = torch.load(path, weights_only=True)
    assert state["outcome"][0]["model"] is not None  # the early stopper, retired before the save
    del state["outcome"][0]["model"]["head.bias"]  # found only after the generators were read
    torch.save(state, path)
    recs = train_group(CKPT_GROUP, checkpoint=path)
    assert "ignoring checkpoint" in caplog.text
    for ref, rec in zip(train_group(CKPT_GROUP), recs):  # a clean start, not a half-resumed one
        assert {k: rec[k] for k in _COMPARED} == {k: ref[k] for k in _COMPARED}


def test_checkpoint_of_another_group_or_corrupt_is_ignored(tmp_path, caplog):
    path = tmp_path / "group.pt"
    train_group(CKPT_GROUP[1:], checkpoint=path, checkpoint_every=0)
    other = [c.replace(epochs=2) for c in CKPT_GROUP[1:]]
    path_other = tmp_path / "other.pt"
    path_other.write_bytes(path.read_bytes())
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    reference = train_group(other)
    for name in ("other.pt", "corrupt.pt"):
        caplog.clear()
        recs = train_group(other, checkpoint=tmp_path / name)
        assert "ignoring checkpoint" in caplog.text and name in caplog.text
        assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()
        for ref, rec in zip(reference, recs):
            assert {k: rec[k] for k in _COMPARED} == {k: ref[k] for k in _COMPARED}
