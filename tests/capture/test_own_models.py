"""Models the package did not build, made locally from tiny configs (no weights downloaded).

For each: the logits are found as the model's output, the default points are the ones
``dnn_spring.capture._points`` documents, the tracker and ``diagnose`` give the same curve on the same
probe, and the callbacks log a finite c and v.
"""

import math
import warnings

import lightning
import numpy as np
import pytest
import torch
import torchvision
import transformers
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dnn_spring.capture._diagnose import diagnose
from dnn_spring import LoadCurveTracker, load_curve, load_shape
from dnn_spring.capture._points import default_points

transformers.logging.set_verbosity_error()
pytestmark = pytest.mark.filterwarnings("ignore:under-sampled load-curve points")


def _images(n=48, size=32, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    return torch.randn(n, 3, size, size, generator=g) + 0.5 * y[:, None, None, None], y


def _features(n=120, p=20, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    return 3 * torch.randn(classes, p, generator=g)[y] + torch.randn(n, p, generator=g), y


def _ids(n=48, length=6, vocab=50, seed=0):
    return torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(seed))


def _resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=4)


def _vit():
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=16, patch_size=4, num_layers=4,
                                                 num_heads=2, hidden_dim=16, mlp_dim=32,
                                                 num_classes=4)
    nn.init.normal_(model.heads.head.weight, std=0.1)  # torchvision starts the head at zero
    return model


def _bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=4,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=16, num_labels=4)
    return transformers.BertForSequenceClassification(config)


def _gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50, n_embd=16, n_layer=4, n_head=2, n_positions=16)
    return transformers.GPT2LMHeadModel(config)


class DictNet(nn.Module):
    """A forward that returns a dict: features and logits."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.act1 = nn.Linear(20, 32), nn.ReLU()
        self.fc2, self.act2 = nn.Linear(32, 32), nn.ReLU()
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        h = self.act2(self.fc2(self.act1(self.fc1(x))))
        return {"features": h, "logits": self.head(h)}


def _sequential():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))


class Wrapped(lightning.LightningModule):
    """The usual LightningModule: the network in ``self.net``, a loss module beside it."""

    def __init__(self, net):
        super().__init__()
        self.net, self.loss = net, nn.CrossEntropyLoss()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        out = self(batch[0])
        return self.loss(out["logits"] if isinstance(out, dict) else out, batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


BLOCKS = [f"layer{i}.{b}" for i in range(1, 5) for b in (0, 1)]
CASES = {  # model, data, labels, the documented default points, options
    "resnet18": (_resnet, _images, ["input", "maxpool", *BLOCKS, "fc"], {}),
    "vit": (_vit, lambda: _images(size=16),
            [f"encoder.layers.encoder_layer_{i}" for i in range(4)] + ["heads"], {}),
    "bert": (_bert, lambda: (_ids(), torch.arange(48) % 4),
             [f"bert.encoder.layer.{i}" for i in range(4)] + ["classifier"], {"pool": "first"}),
    "sequential": (_sequential, _features, ["input", "1", "3", "5", "6"], {}),
    "dict_output": (DictNet, _features, ["input", "fc1", "act1", "fc2", "act2", "head"], {}),
    "lightning": (lambda: Wrapped(_sequential()), _features,
                  ["input", "net.1", "net.3", "net.5", "net.6"], {}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_logits_found_default_points_and_one_measurement(name):
    make, data, points, options = CASES[name]
    model, (x, y) = make(), data()
    assert default_points(model, x) == points
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = diagnose(model, x, y, **options)
        tracked = LoadCurveTracker(model, x, y, **options).measure()
    assert list(found.layers["layer"]) == points
    # the logits are the last point (the model's output), found without a logits_layer
    assert list(found.layers["is_logits"]) == [False] * (len(points) - 1) + [True]
    assert list(tracked["is_logits"]) == list(found.layers["is_logits"])
    np.testing.assert_array_equal(found.layers["log_d"].to_numpy(), tracked["log_d"].to_numpy())
    shape = load_shape(tracked)  # the logits left out by default
    assert found.summary["c"] == pytest.approx(shape.c, nan_ok=True)
    assert math.isfinite(found.summary["c"]) and math.isfinite(found.summary["v"])


def test_gpt2_next_token_blocks_and_head():
    model, ids = _gpt2(), _ids()
    points = [f"transformer.h.{i}" for i in range(4)] + ["lm_head"]
    assert default_points(model, ids, target="next_token") == points
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = diagnose(model, ids, target="next_token")
        tracked = LoadCurveTracker(model, ids, target="next_token").measure()
    assert list(found.layers["is_logits"]) == [False] * 4 + [True]
    np.testing.assert_array_equal(found.layers["log_d"].to_numpy(), tracked["log_d"].to_numpy())
    assert math.isfinite(found.summary["c"])


def test_logits_argument_overrides_and_none_keeps_every_point():
    model, (x, y) = _sequential(), _features()
    auto = load_curve(model, x, y)
    none = load_curve(model, x, y, logits=None)
    named = load_curve(model, x, y, logits="5")
    assert auto["is_logits"].tolist() == [False] * 4 + [True]
    assert not none["is_logits"].any()
    assert named["is_logits"].tolist() == [False, False, False, True, False]
    # Shape statistics leave the logits out: the same as dropping the last point by hand.
    assert load_shape(auto).c == pytest.approx(load_shape(auto["log_d"].to_numpy()[:-1], logits=None).c)
    with pytest.raises(ValueError, match="`logits` point 'fc' is not measured"):
        load_curve(model, x, y, logits="fc")


def _fit(module, callback, x, y, epochs=2):
    trainer = lightning.Trainer(max_epochs=epochs, callbacks=[callback], logger=False,
                                enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=24))
    return trainer


@pytest.mark.parametrize("net", ["sequential", "dict_output", "resnet18"])
def test_the_lightning_callback_logs_finite_c_and_v(net, tmp_path, monkeypatch):
    from dnn_spring.integrations.lightning import LoadCurveCallback

    monkeypatch.chdir(tmp_path)
    make, data, points, _ = CASES[net]
    x, y = data()
    module = Wrapped(make())
    callback = LoadCurveCallback(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = _fit(module, callback, x, y)
    assert list(callback.history["layer"].unique()) == \
        [p if p == "input" else f"net.{p}" for p in points]
    assert math.isfinite(float(trainer.callback_metrics["load_curve/c"]))
    assert math.isfinite(float(trainer.callback_metrics["load_curve/v"]))


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_the_hf_callback_logs_finite_c_and_v(name):
    from transformers import TrainerControl, TrainerState

    from dnn_spring.integrations.hf import LoadCurveCallback

    ids = _ids()
    if name == "bert":
        model, options = _bert(), {"pool": "first"}
        callback = LoadCurveCallback(ids, torch.arange(48) % 4, every=1, **options)
    else:
        model, options = _gpt2(), {"target": "next_token"}
        callback = LoadCurveCallback(ids, every=1, **options)
    state = TrainerState()
    state.global_step, state.epoch = 1, 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        callback.on_step_end(None, state, TrainerControl(), model=model)
        found = diagnose(model, ids, None if name == "gpt2" else torch.arange(48) % 4, **options)
    logged = state.log_history[-1]
    assert math.isfinite(logged["load_curve/c"]) and math.isfinite(logged["load_curve/v"])
    assert logged["load_curve/c"] == pytest.approx(found.summary["c"])  # one measurement


def test_fewer_than_three_points_is_a_warning_and_nan_shape_not_a_traceback():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))
    x, y = _features()
    with pytest.warns(UserWarning, match="no load-curve shape"):
        found = diagnose(model, x, y, layers=["1", "2"])
    assert found.summary["regime"] is None and math.isnan(found.summary["c"])
    assert "at least 3 points" in found.advice


def test_advice_names_only_the_knobs_the_model_has():
    from dnn_spring.capture._diagnose import _knobs

    leaky = nn.Sequential(nn.Linear(20, 32), nn.LeakyReLU(0.1), nn.Dropout(0.1), nn.Linear(32, 4))
    assert _knobs(_resnet()) == {"slope": False, "dropout": False}
    assert _knobs(leaky) == {"slope": True, "dropout": True}
    x, y = _images()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for layers in (None, ["maxpool", "layer2.0", "layer4.1", "fc"]):
            assert "LeakyReLU" not in diagnose(_resnet(), x, y, layers=layers).advice


def test_a_rising_curve_says_so_and_names_no_share():
    # A layer that keeps one random direction of well-separated features: the classes
    # separate worse after it than before, so the curve rises (total load < 0).
    x, y = _features()
    torch.manual_seed(0)
    squeeze = nn.Linear(20, 20)
    with torch.no_grad():
        squeeze.weight.copy_(torch.outer(torch.randn(20), torch.randn(20)))
    model = nn.Sequential(nn.Linear(20, 20), nn.ReLU(), squeeze, nn.ReLU(), nn.Linear(20, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = diagnose(model, x, y)
    hidden = ~found.layers["is_logits"] & (found.layers.index > 0)
    assert found.layers.loc[hidden, "load"].sum() < 0
    assert "rises" in found.advice and "carry most of the load" not in found.advice
    assert found.layers["share"].isna().all()


def test_under_sampled_points_are_warned_once_and_recorded():
    x, y = _images(n=24)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = load_curve(_resnet(), x, y)
    under = [str(w.message) for w in caught if "under-sampled" in str(w.message)]
    assert len(under) == 1 and "maxpool (width 4,096)" in under[0] and "project=" in under[0]
    # the rule: width >= samples - classes (24 - 4 = 20): every point but the 4-wide fc
    assert frame["under_sampled"].tolist() == [True] * 10 + [False]
    projected = load_curve(_resnet(), x, y, project=8, warn=False)
    assert (projected["width"] <= 8).all() and not projected["under_sampled"].any()
    again = load_curve(_resnet(), x, y, project=8, warn=False)
    np.testing.assert_array_equal(projected["log_d"], again["log_d"])  # seeded
