"""Counter-based random streams (dnn_spring.train._rng) and the batched step's launch profile.

The bits are checked against SplitMix64 written here in plain Python
integers; the floats against their distributions; the group independence by
drawing a member alone and inside larger groups at other positions.  The
step's operator count and host reads are counted with torch.profiler and by
counting the Python-side reads of device tensors.
"""

import copy
from collections import Counter

import numpy as np
import pytest
import torch
from scipy import stats

from dnn_spring.train import _rng as rng
from dnn_spring.train._group import GroupLoop
from dnn_spring.train._config import RunConfig
from dnn_spring.train._data import load_dataset

import launches  # tests/launches.py: operator and host-read counts

MASK = (1 << 64) - 1


def _mix_ref(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def _bits_ref(key: int, counter: int, n: int) -> list:
    base = _mix_ref((key + counter * 0xD1B54A32D192ED03) & MASK)
    out = [_mix_ref((base + (i + 1) * 0x9E3779B97F4A7C15) & MASK) for i in range(n)]
    return [v - (1 << 64) if v >= 1 << 63 else v for v in out]


def test_bits_are_splitmix64():
    keys = rng.member_keys([0, 7, 123456789], "cpu")["order"]
    for counter in (0, 1, 2**40 + 3):
        got = rng.random_bits(keys, counter, 9)
        for k in range(3):
            assert got[k].tolist() == _bits_ref(int(keys[k]) & MASK, counter, 9)
    # a device counter gives the same words as an int
    assert torch.equal(rng.random_bits(keys, torch.tensor(5), 4),
                       rng.random_bits(keys, 5, 4))


def test_keys_differ_by_stream_and_seed():
    keys = rng.member_keys(range(50), "cpu")
    words = torch.cat(list(keys.values()))
    assert len(set(words.tolist())) == words.numel()


def test_distributions():
    keys = rng.member_keys([3, 4], "cpu")
    u = rng.uniform(keys["coin"], 0, 200_000).double()
    assert u.min() >= 0 and u.max() < 1
    assert stats.kstest(u[0].numpy(), "uniform").pvalue > 1e-3
    z = rng.normal(keys["input"], 1, 200_000).double()
    assert stats.kstest(z[1].numpy(), "norm").pvalue > 1e-3
    # independent rows (members) and counters
    assert abs(np.corrcoef(z[0].numpy(), z[1].numpy())[0, 1]) < 0.01
    z2 = rng.normal(keys["input"], 2, 200_000)
    assert abs(np.corrcoef(z[0].numpy(), z2[0].numpy())[0, 1]) < 0.01
    counts = torch.bincount(rng.below(keys["label"], 0, 100_000, 7)[0], minlength=7)
    assert stats.chisquare(counts.numpy()).pvalue > 1e-3
    perm = rng.order(keys["order"], 3, 1000)
    assert all(sorted(row) == list(range(1000)) for row in perm.tolist())
    keep, scale = rng.keep_mask(keys["dropout"], 0, 400_000, torch.tensor([0.25, 0.0]))
    assert keep[0].float().mean().item() == pytest.approx(0.75, abs=0.003)
    assert keep[1].all() and scale.view(-1).tolist() == pytest.approx([4 / 3, 1.0])


@pytest.mark.parametrize("threads", [1, 2])
def test_a_members_draws_do_not_depend_on_its_group(threads):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.randn(300, 5, generator=torch.Generator().manual_seed(0))
        y = torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(1))
        alone = rng.epoch_samples(x, y, rng.member_keys([11], "cpu"), 4, shuffle=True,
                                      noise=[0.3], x_std=1.5, n_classes=4)
        seeds, noise = [5, 6, 11, 8, 9, 10, 12], [0.1, 0.0, 0.3, 0.5, 0.0, 0.2, 0.9]
        group = rng.epoch_samples(x, y, rng.member_keys(seeds, "cpu"), 4, shuffle=True,
                                      noise=noise, x_std=1.5, n_classes=4)
        assert torch.equal(group[0][2], alone[0][0]) and torch.equal(group[1][2], alone[1][0])
        big = rng.member_keys(list(range(100, 160)) + [11], "cpu")
        z = rng.normal(big["input"], 9, 1000)
        assert torch.equal(z[-1], rng.normal(rng.member_keys([11], "cpu")["input"],
                                                 9, 1000)[0])
    finally:
        torch.set_num_threads(old)


def test_epoch_samples_noise_rule():
    n, c, p = 100_000, 10, 0.4
    x, y = torch.zeros(n, 3), torch.zeros(n, dtype=torch.long)
    keys = rng.member_keys([2, 3], "cpu")
    xe, ye = rng.epoch_samples(x, y, keys, 1, shuffle=True, noise=[p, 0.0], x_std=2.0,
                                   n_classes=c)
    assert (ye[0] != 0).double().mean().item() == pytest.approx(p * (1 - 1 / c), abs=0.01)
    assert xe[0].std().item() == pytest.approx(p * 2.0, rel=0.01)
    assert torch.equal(xe[1], x) and torch.equal(ye[1], y)  # no noise: untouched


# --------------------------------------------------------------- the step's launches

TINY = RunConfig().replace(dataset="gaussian", n_train=200, depth=4, width=16, batch_size=10,
                           epochs=2, noise=0.2, dropout=0.1, stop_loss=0.0, stop_delta=0.0)
def _fit(n: int, **kw) -> GroupLoop:
    configs = [TINY.replace(seed=i, slope=i / max(n - 1, 1), **kw) for i in range(n)]
    fit = GroupLoop(configs, load_dataset(TINY.data, flatten=True), torch.device("cpu"))
    fit.epoch = 1
    return fit


@pytest.mark.parametrize("batch_size", [10, 0])
def test_operators_per_step_do_not_grow_with_the_group(batch_size):
    counts = {}
    for n in (1, 2, 9):
        fit = _fit(n, batch_size=batch_size)
        xe, ye = fit.epoch_data()
        b = xe.shape[2] if batch_size == 0 else batch_size
        xb, yb = xe[:, :, :b].contiguous(), ye[:, :b]
        fit.model.step(xb, yb)
        counts[n] = Counter(e.name for e in launches.events(lambda: fit.model.step(xb, yb)))
        counts[n, "data"] = len(launches.events(fit.epoch_data))
    for n in (2, 9):
        total = sum(counts[n].values()) - sum(counts[1].values())
        assert abs(total) <= 20, (n, counts[n] - counts[1], counts[1] - counts[n])
        assert counts[n, "data"] == counts[1, "data"]


def test_no_host_sync_inside_an_epoch(monkeypatch):
    fit = _fit(3)
    fit.model.step(*[t[..., :10].contiguous() for t in fit.epoch_data()])
    fit.epoch = 2
    events, reads = launches.epoch_reads(fit, monkeypatch)
    syncs = launches.syncs_outside_fused_adam(events)
    assert not syncs  # the fused Adam's CPU kernel reads its CPU step count; nothing else
    assert sum(1 for e in events if e.name == "aten::_fused_adam_") == 20  # 200 / 10 steps
    assert dict(reads) == {"tolist": 1}  # one read of losses and finite flags per epoch


# --------------------------------------------------------------- CUDA graph bookkeeping


def test_graph_replays_give_the_eager_records(monkeypatch):
    """The CUDA-graph path's bookkeeping, on the CPU with a stand-in graph.

    The stand-in records by running the step and then restoring the model's
    state (a recording runs no kernel), and replays by running the step again
    into the recorded output.  Graphs are kept per batch shape (the last
    batch of 200 at 30 is its own) and dropped when members retire.
    """
    from dnn_spring.train import _cuda_graphs as graphs
    from dnn_spring.train._group import train_group

    recorded = []

    class Graph:
        def __init__(self, fn, out):
            self.fn, self.out = fn, out

        def replay(self):  # the kernels run again; the step's Python does not
            self.out.copy_(self.fn())
            current["model"].opt.t -= 1

    def record(fn, pool=None):
        fit_model = current["model"]
        saved = copy.deepcopy(fit_model.state())  # state() shares storage with the model
        out = fn().clone()
        fit_model.load_state(saved)  # a recording runs no kernel ...
        fit_model.opt.t += 1  # ... but the step's Python once
        recorded.append(out.shape)
        return Graph(fn, out), out

    current = {}
    original_init = graphs.StepGraphs.__init__

    def init(self, model):
        current["model"] = model
        original_init(self, model)

    def clear(self, model=None):
        recorded.append("clear")
        self._graphs.clear()
        if model is not None:
            self.model = current["model"] = model

    monkeypatch.setattr(graphs, "_warm_up", lambda fn, device: fn())
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: "pool")
    monkeypatch.setattr(graphs, "_capture_step", record)
    monkeypatch.setattr(graphs.StepGraphs, "__init__", init)
    monkeypatch.setattr(graphs.StepGraphs, "clear", clear)
    monkeypatch.setattr(graphs, "cuda_graphs_enabled", lambda flag, device: bool(flag))
    from dnn_spring.train import _group as batched
    monkeypatch.setattr(batched, "cuda_graphs_enabled", lambda flag, device: bool(flag))
    configs = [TINY.replace(seed=i, batch_size=30, epochs=6, lr=lr, stop_loss=2.2)
               for i, lr in enumerate([1e-4, 5e-2, 1e-4])]
    eager = train_group(configs)
    graphed = train_group(configs, cuda_graphs=True)
    assert [r["epochs_run"] for r in eager][1] < 6  # a member retired early
    for a, b in zip(eager, graphed):
        for key in ("train_loss", "test_acc", "log_d", "stop_reason", "epochs_run"):
            assert a[key] == b[key], key
    assert "clear" in recorded and len([r for r in recorded if r != "clear"]) >= 2
