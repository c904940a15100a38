"""The batched CNN: its maths against models.CNN, members against their single runs,
its dropout masks, its launch profile, checkpoints and the grouping policy."""

from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from dnn_spring.train import _rng as rng
from dnn_spring.train._group import GroupLoop, train_group
from dnn_spring.train._config import RunConfig
from dnn_spring.train._data import load_dataset
from dnn_spring.train._grouping import group_key, max_group_size
from dnn_spring.train._models import CNN
from dnn_spring.train._run import train_run

import launches  # tests/launches.py: operator and host-read counts

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = RunConfig().replace(arch="cnn", depth=3, channels=4, dataset="mnist5k", n_train=200,
                           batch_size=64, epochs=3)
# different seeds, dropout 0 / 0.3, noise 0 / 0.2, slopes and learning rates
MEMBERS = [
    BASE.replace(seed=1),
    BASE.replace(seed=2, dropout=0.3, noise=0.2, slope=0.2),
    BASE.replace(seed=3, noise=0.2, lr=3e-3, init="kaiming"),
]
DATA = load_dataset(BASE.data, flatten=False)


def _fit(configs, epochs: int = 0) -> GroupLoop:
    fit = GroupLoop(configs, DATA, torch.device("cpu"))
    for fit.epoch in range(1, epochs + 1):
        fit.run_epoch()
    return fit


@pytest.mark.parametrize("n", [1, 2])
def test_the_stacked_step_is_the_cnn_modules_step(n):
    configs = [BASE.replace(seed=4, slope=0.1), BASE.replace(seed=5, slope=0.7, init="orthogonal")]
    configs = configs[:n]
    model = _fit(configs).model
    x, y = DATA.x_train[:32], DATA.y_train[:32]
    xs = x.transpose(0, 1).unsqueeze(0).expand(n, -1, -1, -1, -1)  # (N, C, B, H, W)
    losses = model.losses(xs, y.expand(n, -1))
    names = model.param_names
    grads = torch.autograd.grad(losses.mean(1).sum(), [model.params[k] for k in names])
    for pos, config in enumerate(configs):
        net = model.export(pos)
        assert isinstance(net, CNN) and net.training
        ref_params = dict(net.named_parameters())
        loss = F.cross_entropy(net(x), y)  # train mode, fresh running statistics
        ref = torch.autograd.grad(loss, [ref_params[k] for k in names])
        torch.testing.assert_close(losses[pos].mean(), loss, rtol=1e-5, atol=1e-6)
        for k, g, r in zip(names, grads, ref):
            torch.testing.assert_close(g[pos].reshape(r.shape), r, rtol=1e-3, atol=1e-5,
                                       msg=lambda m, k=k: f"{k}: {m}")


def test_channel_leaky_relu_is_the_native_one_per_channel():
    from dnn_spring.train._group_cnn import ChannelLeakyReLU

    x = torch.randn(5, 6, 4, 4, requires_grad=True)
    with torch.no_grad():
        x[0, :, 0, 0] = 0.0  # the kink: PyTorch takes the negative side
    g = torch.randn(5, 6, 4, 4)
    slopes = torch.tensor([0.0, 0.0, 0.3, 0.3, 1.0, 1.0])
    out = ChannelLeakyReLU.apply(x, slopes)
    (grad,) = torch.autograd.grad(out, x, g)
    for c, a in enumerate(slopes.tolist()):  # exact: the single run takes the native kernel
        ref = F.leaky_relu(x[:, c], a)
        (ref_grad,) = torch.autograd.grad(ref, x, g[:, c])
        assert torch.equal(out[:, c], ref) and torch.equal(grad[:, c], ref_grad[:, c])


@pytest.mark.parametrize("threads", [1, 2])
def test_per_channel_kernels_do_not_depend_on_the_group(threads):
    """BatchNorm, activation, pooling, upsampling: a member's block is bit for bit its own.

    Only the convolutions (grouped or plain) and the head round differently.
    """
    gen = torch.Generator().manual_seed(0)
    x = [torch.randn(9, 4, 10, 10, generator=gen) * 3 + 1 for _ in range(8)]
    g = [torch.randn(9, 4, 10, 10, generator=gen) for _ in range(8)]

    def member(n, pos):
        order = list(range(1, n))
        order.insert(pos, 0)
        xs = torch.cat([x[i] for i in order], 1).requires_grad_()
        w, b = torch.ones(4 * n, requires_grad=True), torch.zeros(4 * n, requires_grad=True)
        mean, var = torch.zeros(4 * n), torch.ones(4 * n)
        out = F.batch_norm(xs, mean, var, w, b, True, 0.1, 1e-5)
        out = F.interpolate(F.max_pool2d(F.leaky_relu(out, 0.1), 2), scale_factor=2)
        grads = torch.autograd.grad(out, [xs, w, b], torch.cat([g[i] for i in order], 1))
        block = slice(4 * pos, 4 * pos + 4)
        return [t[:, block] if t.dim() == 4 else t[block] for t in (out.detach(), *grads)] + \
            [mean[block], var[block]]

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        alone = member(1, 0)
        for n, pos in ((2, 1), (3, 1), (8, 0), (8, 7)):
            assert all(torch.equal(a, b) for a, b in zip(member(n, pos), alone)), (n, pos)
    finally:
        torch.set_num_threads(old)


def test_exported_members_keep_their_statistics():
    fit = _fit(MEMBERS, epochs=1)
    for pos in range(3):
        net = fit.model.export(pos).eval()
        for k, t in fit.model.buffers.items():
            assert torch.equal(net.state_dict()[k], t[pos]), k
        assert int(net.blocks[0].bn.num_batches_tracked) == 4  # 64 + 64 + 64 + 8 samples
        assert net(DATA.x_test[:5]).shape == (5, 10)


def test_dropout_masks_follow_the_documented_layout():
    fit = _fit(MEMBERS)
    model, batch = fit.model, 3
    masks = model.dropout_masks(batch)  # (L-1, B, N·C, H, W)
    blocks, c, (_, h, w) = model.blocks, model.channels, model.input_shape
    assert masks.shape == (blocks, batch, 3 * c, h, w)
    for pos, config in enumerate(MEMBERS):
        key = rng.member_keys([config.seed], "cpu")["dropout"]
        keep, scale = rng.keep_mask(key, 0, blocks * batch * c * h * w,
                                        torch.tensor([config.model.dropout]))
        ref = (keep.view(blocks, batch, c, h, w) * scale).float()
        assert torch.equal(masks[:, :, pos * c:(pos + 1) * c], ref)
        # a member's masks do not depend on its group
        alone = _fit([config]).model.dropout_masks(batch)
        if config.model.dropout:
            assert torch.equal(alone, ref)
    assert masks[:, :, c:2 * c].eq(0).float().mean().item() == pytest.approx(0.3, abs=0.03)


_EXACT = ("status", "stop_reason", "epochs_run")
_CLOSE = ("train_loss", "train_acc", "test_acc")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.slow
def test_members_match_their_single_runs(threads):
    """Up to float32 rounding: grouped and plain convolutions are different kernels.

    With SGD the rounding differences stay at float32 level for these few
    epochs (Adam blows them up on the convolution biases, whose gradient is
    zero in exact arithmetic since BatchNorm follows: see the next test).
    """
    configs = [c.replace(optimizer="sgd", lr=c.train.lr * 50, curve_every=3) for c in MEMBERS]
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        group = train_group(configs)
        singles = [train_run(c) for c in configs]
    finally:
        torch.set_num_threads(old)
    for rec, single in zip(group, singles):
        assert rec["key"] == single["key"]
        assert [rec[k] for k in _EXACT] == [single[k] for k in _EXACT] == ["ok", "epochs", 3]
        for k in _CLOSE:
            assert rec[k] == pytest.approx(single[k], abs=1e-3), k
        assert rec["log_d"] == pytest.approx(single["log_d"], abs=1e-3)
        assert rec["trajectory"][0]["log_d"] == pytest.approx(single["trajectory"][0]["log_d"],
                                                              abs=1e-3)
    assert group[1]["train_acc"] != group[0]["train_acc"]  # they are different runs


def test_members_follow_their_single_runs_step_by_step_with_adam():
    group = _fit(MEMBERS, epochs=2).model
    for pos, config in enumerate(MEMBERS):
        single = _fit([config], epochs=2).model
        for k in group.param_names + group.buffer_names:
            if k.endswith("conv.bias") or k.startswith("blocks.") and k.endswith("running_mean"):
                continue  # zero gradient but for rounding, which Adam scales up; the mean tracks it
            a = group.params[k][pos] if k in group.params else group.buffers[k][pos]
            b = single.params[k][0] if k in single.params else single.buffers[k][0]
            torch.testing.assert_close(a.float(), b.float(), rtol=1e-4, atol=1e-5,
                                       msg=lambda m, k=k: f"{k}: {m}")


# ------------------------------------------------------------------ launch profile

def _noisy(n: int) -> list:
    return [BASE.replace(seed=i, slope=i / 8, noise=0.2, dropout=0.1)
            for i in range(n)]


def test_operators_per_step_do_not_grow_with_the_group():
    counts = {}
    for n in (1, 2, 8):
        fit = _fit(_noisy(n))
        fit.epoch = 1
        xe, ye = fit.epoch_data()
        xb, yb = xe[:, :, :16].contiguous(), ye[:, :16]
        fit.model.step(xb, yb)
        # zero_ runs aten::fill_ or not, by the tensor's size
        counts[n] = Counter(e.name for e in launches.events(lambda: fit.model.step(xb, yb))
                            if e.name != "aten::fill_")
    assert counts[2] == counts[8], (counts[8] - counts[2], counts[2] - counts[8])
    # a lone member's head is one F.linear instead of member_bmm's copies
    assert sum(counts[1].values()) <= sum(counts[8].values())
    assert counts[1]["aten::convolution"] == counts[8]["aten::convolution"] == 2


def test_no_host_sync_inside_an_epoch(monkeypatch):
    fit = _fit(_noisy(3))
    fit.epoch = 1
    xe, ye = fit.epoch_data()
    fit.model.step(xe[:, :, :10].contiguous(), ye[:, :10])  # warm-up
    fit.epoch = 2
    events, reads = launches.epoch_reads(fit, monkeypatch)
    syncs = launches.syncs_outside_fused_adam(events)
    assert not syncs  # the fused Adam's CPU kernel reads its CPU step count; nothing else
    assert sum(1 for e in events if e.name == "aten::_fused_adam_") == 4  # 200 / 64 steps
    assert dict(reads) == {"tolist": 1}  # one read of losses and finite flags per epoch


# ------------------------------------------------------------------ checkpoints, grouping


def test_a_killed_group_resumes_with_the_same_records(tmp_path, monkeypatch):
    configs = [c.replace(epochs=4, stop_loss=2.15) for c in MEMBERS]
    whole = train_group(configs)
    assert [(r["stop_reason"], r["epochs_run"]) for r in whole] == \
        [("loss", 3), ("epochs", 4), ("loss", 4)]  # one member retires before the kill
    original, calls = GroupLoop.run_epoch, []

    def killed_after_three(self):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(GroupLoop, "run_epoch", killed_after_three)
    path = tmp_path / "group.pt"
    with pytest.raises(KeyboardInterrupt):
        train_group(configs, checkpoint=path, checkpoint_every=0)
    monkeypatch.undo()
    assert path.exists()
    resumed = train_group(configs, checkpoint=path)
    drop = {"wall_time"}
    for a, b in zip(resumed, whole):
        assert {k: v for k, v in a.items() if k not in drop} == \
            {k: v for k, v in b.items() if k not in drop}


def test_cnn_configs_group_by_member_fields():
    assert group_key(BASE) == group_key(BASE.replace(seed=4, slope=0.4, lr=0.1, noise=0.3,
                                                     dropout=0.2, init="kaiming"))
    assert group_key(BASE) != group_key(BASE.replace(channels=8))
    assert group_key(BASE) != group_key(BASE.replace(arch="mlp"))
    assert max_group_size(BASE, device="cpu") == 1  # one at a time is faster on a CPU


def test_a_slurm_plan_sends_cpu_cnn_runs_alone():
    from dnn_spring.sweep._runner import plan_tasks

    configs = [BASE.replace(seed=s, dropout=p) for s in range(2) for p in (0.0, 0.1, 0.2)]
    cpu = plan_tasks(configs, max_size=1 << 30, device="cpu")  # as a Slurm sweep plans
    assert [len(c) for c in cpu] == [1] * 6
    gpu = plan_tasks(configs, max_size=1 << 30, device="cuda")  # no GPU needed to plan
    assert [len(c) for c in gpu] == [6]
