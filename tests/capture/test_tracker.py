"""LoadCurveTracker (the load curve during training) and diagnose (the stress map)."""

import math
import warnings

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dnn_spring.capture._diagnose import diagnose
from dnn_spring import LoadCurveTracker, load_curve
from dnn_spring.capture._diagnose import FLAGS

matplotlib.use("Agg")


def _data(n=600, p=20, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    means = 3 * torch.randn(classes, p, generator=g)
    return means[y] + torch.randn(n, p, generator=g), y


def _mlp(p=20, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(p, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))


def test_rows_equal_load_curve_at_the_same_step():
    x, y = _data()
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tracker = LoadCurveTracker(model, x, y, every=3, probe_size=256, seed=7)
    keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(7))[:256].sort().values
    expected = {}
    for step in range(1, 10):
        loss = nn.functional.cross_entropy(model(x[step * 50:(step + 1) * 50]), y[step * 50:(step + 1) * 50])
        opt.zero_grad()
        loss.backward()
        opt.step()
        rows = tracker.step()
        assert (rows is not None) == (step % 3 == 0)
        if rows is not None:
            expected[step] = load_curve(model, x[keep], y[keep], inverse=False)["log_d"].to_numpy()
    history = tracker.history
    assert sorted(history["step"].unique()) == [3, 6, 9]
    for step, log_d in expected.items():
        got = history[history["step"] == step].sort_values("point")["log_d"].to_numpy()
        np.testing.assert_allclose(got, log_d, rtol=1e-6)
    assert {"epoch", "layer", "load", "v", "c", "regime", "rank_b", "cond_b"} <= set(history.columns)
    # the shape statistics are the curve's, repeated on its rows
    assert history.groupby("step")["c"].nunique().max() == 1
    assert model.training  # mode restored


def test_epochs_loaders_and_the_figure():
    x, y = _data()
    model = _mlp()
    loader = DataLoader(TensorDataset(x, y), batch_size=100)
    tracker = LoadCurveTracker(model, loader, every=2)
    assert [tracker.epoch_end() is not None for _ in range(4)] == [False, True, False, True]
    assert list(tracker.history["epoch"].unique()) == [2, 4]
    epochs, curves, names = tracker.curves(x="epoch")
    assert list(epochs) == [2, 4] and curves.shape == (2, len(names))
    assert list(tracker.history["measurement"].unique()) == [0, 1]
    fig = tracker.plot(x="epoch")
    # the documented points of a Sequential: the input, each activation, the last child (the
    # logits, found as the model's output and left out of the figure)
    assert names == ["input", "1", "3", "5", "6"]
    assert fig.axes[0].get_xlabel() == "epoch" and len(fig.axes[0].lines) == len(names) - 1
    reference = load_curve(model, x, y, inverse=False)["log_d"].to_numpy()
    np.testing.assert_allclose(tracker.history.tail(len(names))["log_d"], reference, rtol=1e-6)


def test_the_probe_subset_is_seeded_and_bad_input_is_one_line():
    x, y = _data()
    a = LoadCurveTracker(_mlp(), x, y, probe_size=100, seed=3).measure()
    b = LoadCurveTracker(_mlp(), x, y, probe_size=100, seed=3).measure()
    c = LoadCurveTracker(_mlp(), x, y, probe_size=100, seed=4).measure()
    assert a["log_d"].equals(b["log_d"]) and not a["log_d"].equals(c["log_d"])
    assert (a["n_samples"] == 100).all()
    with pytest.raises(ValueError, match="`labels` is required"):
        LoadCurveTracker(_mlp(), x)
    with pytest.raises(ValueError, match="`every` must be"):
        LoadCurveTracker(_mlp(), x, y, every=0)
    with pytest.raises(TypeError, match="re-iterable"):
        LoadCurveTracker(_mlp(), iter([(x, y)]))
    with pytest.raises(ValueError, match="nothing measured yet"):
        LoadCurveTracker(_mlp(), x, y).plot()
    with pytest.raises(ValueError, match="at least two classes"):
        LoadCurveTracker(_mlp(), x, torch.zeros(len(x), dtype=torch.long)).measure()


class _TowardMeans(nn.Module):
    """Pull each sample a fraction ``k`` of the way to its nearest class mean (nonlinear)."""

    def __init__(self, means, k):
        super().__init__()
        self.register_buffer("means", means)
        self.k = k

    def forward(self, x):
        nearest = self.means[torch.cdist(x, self.means).argmin(1)]
        return x + self.k * (nearest - x)


def test_diagnose_flags_an_overloaded_and_an_idle_layer():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(800) % 4
    means = 6 * torch.randn(4, 20, generator=g)
    x = means[y] + torch.randn(800, 20, generator=g)
    model = nn.Sequential(_TowardMeans(means, 0.3), _TowardMeans(means, 0.3), nn.Identity(),
                          _TowardMeans(means, 0.95), _TowardMeans(means, 0.3), _TowardMeans(means, 0.3))
    d = diagnose(model, x, y)
    flags = dict(zip(d.layers["layer"], d.layers["flag"]))
    assert flags["3"] == "overloaded" and flags["2"] == "idle"
    assert flags["0"] == flags["1"] == flags["4"] == flags["5"] == "ok" == flags["input"]
    assert set(d.layers["flag"]) <= set(FLAGS)
    hidden = d.layers["share"].dropna()
    assert math.isclose(hidden.sum(), 1.0, rel_tol=1e-9)
    # the load of a pull of k is -2 log(1 - k): log D drops by that much
    assert d.layers.set_index("layer").loc["3", "load"] == pytest.approx(-2 * math.log(0.05), rel=0.05)
    assert set(d.summary) >= {"v", "c", "fit_slope", "fit_r2", "regime"}
    assert "3 is overloaded" in d.advice and "2 is idle" in d.advice
    assert "overloaded" in str(d)
    fig = d.plot()
    assert len(fig.axes[0].patches) == len(hidden)


def test_diagnose_advice_follows_the_regime():
    x, y = _data()
    means = torch.stack([x[y == c].mean(0) for c in range(4)])
    for ks, regime, word in (([0.9, 0.3, 0.3, 0.3], "convex", "reduce the training noise"),
                             ([0.05, 0.1, 0.3, 0.8], "concave", "add training noise"),
                             ([0.3, 0.3, 0.3, 0.3], "linear", "keep the current")):
        d = diagnose(nn.Sequential(*[_TowardMeans(means, k) for k in ks]), x, y)
        assert d.summary["regime"] == regime and word in d.advice, (d.summary, d.advice)


@pytest.mark.slow
def test_train_save_model_then_diagnose_on_the_command_line(tmp_path):
    import json as _json
    import subprocess
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).with_name("dnn-spring"))
    run = lambda *a: subprocess.run([cli, *a], capture_output=True, text=True, cwd=tmp_path)  # noqa: E731
    done = run("train", "--dataset", "digits", "--depth", "4", "--width", "32", "--epochs", "3",
               "--threads", "1", "--no-progress", "--save-model", "net.pt")
    assert done.returncode == 0 and "model written to net.pt" in done.stdout, done.stderr
    done = run("diagnose", "--model", "net.pt", "--dataset", "digits", "--out", "stress.png")
    assert done.returncode == 0, done.stderr
    assert "share" in done.stdout and "regime" in done.stdout and (tmp_path / "stress.png").is_file()
    assert done.stderr.count("\n") <= 1  # only the "wrote" line, no warnings
    out = _json.loads(run("diagnose", "--model", "net.pt", "--dataset", "digits", "--json").stdout)
    assert [row["layer"] for row in out["layers"]][0] == "input_bn"
    assert {row["flag"] for row in out["layers"]} <= {"overloaded", "idle", "ok"}
    # a scripted nn.Sequential is measured through taps on its children
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    torch.jit.save(torch.jit.script(seq), str(tmp_path / "seq.pt"))
    done = run("diagnose", "--model", "seq.pt", "--dataset", "digits")
    assert done.returncode == 0 and "taps.1" in done.stdout, done.stderr
    # bad input: one line each
    (tmp_path / "junk.pt").write_text("not a model")
    torch.save(seq.state_dict(), tmp_path / "weights.pt")
    for args, message in ((("--model", "junk.pt"), "is not a saved model"),
                          (("--model", "weights.pt"), "not an nn.Module"),
                          (("--model", "net.pt", "--dataset", "mnist5k"), "do not fit the model"),
                          (("--model", "missing.pt"), "does not exist"),
                          (("--model", "net.pt", "--n-train", "1"), "at least 10, one sample per class")):
        done = run("diagnose", "--dataset", "digits", *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1, done.stderr


def test_probe_size_is_still_read_with_a_warning():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x, y = torch.randn(60, 4, generator=torch.Generator().manual_seed(0)), torch.arange(60) % 3
    with pytest.warns(DeprecationWarning, match="`probe_size` is now called `sample_size`"):
        old = LoadCurveTracker(model, x, y, probe_size=30).measure()
    new = LoadCurveTracker(model, x, y, sample_size=30).measure()
    assert old["log_d"].tolist() == new["log_d"].tolist()
    every = LoadCurveTracker(model, x, y, sample_size=None).measure()
    assert every["log_d"].tolist() != new["log_d"].tolist()
