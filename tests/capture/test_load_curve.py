"""Activation capture and load_curve on arbitrary modules."""

import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dnn_spring import list_layers, load_curve, load_shape
from dnn_spring.metrics._fuzziness import separation_stats


def _data(n=240, shape=(16,), classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centres = torch.randn(classes, *shape, generator=g)
    return torch.randn(n, *shape, generator=g) + 2 * centres[y], y


def _sequential(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(16, 32), nn.ReLU(inplace=True),
        nn.Linear(32, 32), nn.LeakyReLU(0.1, inplace=True),
        nn.Linear(32, 4),
    )


def test_sequential_default_points_match_direct_features():
    model = _sequential()
    x, y = _data()
    curve = load_curve(model, x, y, layers=["0", "1", "2", "3", "4"], inverse=True)
    assert list(curve["layer"]) == ["0", "1", "2", "3", "4"]
    assert list(curve["point"]) == [0, 1, 2, 3, 4]
    assert list(curve["module"]) == ["Linear", "ReLU", "Linear", "LeakyReLU", "Linear"]
    # Independent reference: run the prefix of the Sequential by hand.
    with torch.no_grad():
        feats = x
        for i, layer in enumerate(model):
            feats = layer(feats.clone())
            expected = separation_stats(feats.double(), y)
            assert curve.loc[i, "log_d"] == pytest.approx(expected["log_d"], rel=1e-10)
            assert curve.loc[i, "log_inv_d"] == pytest.approx(expected["log_inv_d"], rel=1e-8)
            assert curve.loc[i, "width"] == feats.shape[1]
    np.testing.assert_allclose(curve["load"][1:], -np.diff(curve["log_d"]))
    assert math.isnan(curve["load"][0])


def test_inplace_activation_does_not_corrupt_the_linear_output():
    model = _sequential()
    x, y = _data()
    curve = load_curve(model, x, y, layers=["0", "1"])
    with torch.no_grad():
        pre = model[0](x)
    assert curve.loc[0, "log_d"] == pytest.approx(separation_stats(pre, y)["log_d"], rel=1e-10)
    assert curve.loc[0, "log_d"] != pytest.approx(curve.loc[1, "log_d"], rel=1e-6)


def test_mode_restored_per_module():
    model = _sequential()
    model.train()
    model[2].eval()
    x, y = _data()
    seen = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(m.training))
    load_curve(model, x, y)
    assert seen and not any(seen)  # measured in eval mode
    assert model.training and model[0].training and not model[2].training


def test_mode_restored_after_an_error():
    model = _sequential()
    model.train()
    x, y = _data()
    with pytest.raises(ValueError, match="NaN or inf"):
        load_curve(model, torch.full_like(x, float("nan")), y)
    assert model.training


def test_layers_by_type_and_callable_and_input():
    model = _sequential()
    x, y = _data()
    by_type = load_curve(model, x, y, layers=(nn.ReLU, nn.LeakyReLU))
    assert list(by_type["layer"]) == ["1", "3"]
    by_call = load_curve(model, x, y, layers=lambda name, m: isinstance(m, nn.Linear))
    assert list(by_call["layer"]) == ["0", "2", "4"]
    with_input = load_curve(model, x, y, layers=["input", "4"])
    assert list(with_input["layer"]) == ["input", "4"]
    assert with_input.loc[0, "log_d"] == pytest.approx(separation_stats(x, y)["log_d"], rel=1e-10)


def test_rows_follow_forward_order_not_the_given_order():
    model = _sequential()
    x, y = _data()
    assert list(load_curve(model, x, y, layers=["4", "0", "2"])["layer"]) == ["0", "2", "4"]


def test_dataloader_and_streaming_match_tensor_input():
    model = _sequential()
    x, y = _data()
    direct = load_curve(model, x, y)
    loader = DataLoader(TensorDataset(x, y), batch_size=50)
    streamed = load_curve(model, loader, cache_bytes=0)  # forces a second forward pass
    np.testing.assert_allclose(streamed["log_d"], direct["log_d"], rtol=1e-10)
    np.testing.assert_allclose(streamed["log_inv_d"], direct["log_inv_d"], rtol=1e-8)


def test_reused_module_gives_one_point_per_call():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(16, 16)
            self.act = nn.Tanh()
            self.block = nn.Sequential(nn.Linear(16, 16), nn.Tanh())

        def forward(self, x):
            return self.block(self.act(self.lin(self.act(x))))

    torch.manual_seed(1)
    model = Twice()
    x, y = _data()
    curve = load_curve(model, x, y, layers=["act", "block.1", "lin"])
    assert list(curve["layer"]) == ["act", "lin", "act#1", "block.1"]
    with torch.no_grad():
        second = torch.tanh(model.lin(torch.tanh(x)))
    assert curve.loc[2, "log_d"] == pytest.approx(separation_stats(second, y)["log_d"], rel=1e-10)


def test_model_protocol_flags_logits_and_shape_drops_them():
    class Net(nn.Module):
        logits_layer = "head"

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
            self.head = nn.Linear(16, 4)

        def load_curve_layers(self):
            return ["body.1", "body.3", "head"]

        def forward(self, x):
            return self.head(self.body(x))

    torch.manual_seed(2)
    x, y = _data()
    curve = load_curve(Net(), x, y, layers=None)
    assert list(curve["layer"]) == ["body.1", "body.3", "head"]
    assert list(curve["is_logits"]) == [False, False, True]
    with pytest.raises(ValueError, match="at least 3 points"):
        load_shape(curve)  # the logits point is dropped, leaving two


def test_resnet18_names_order_and_mode():
    torch.manual_seed(3)
    model = torchvision.models.resnet18(num_classes=4)
    model.train()
    x, y = _data(n=24, shape=(3, 32, 32), classes=4)
    curve = load_curve(model, x, y, batch_size=8)
    # The documented default for a torchvision ResNet: the input, the stem, every block, fc.
    expected = ["input", "maxpool"] + [f"layer{i}.{b}" for i in range(1, 5) for b in (0, 1)] + ["fc"]
    assert list(curve["layer"]) == expected
    assert list(curve["width"]) == [3 * 32 * 32, 64 * 8 * 8, 64 * 8 * 8, 64 * 8 * 8,
                                    128 * 4 * 4, 128 * 4 * 4, 256 * 2 * 2, 256 * 2 * 2,
                                    512, 512, 4]
    assert list(curve["is_logits"]) == [False] * 10 + [True]  # found as the model's output
    assert model.training and all(m.training for m in model.modules())
    assert np.isfinite(curve["log_d"]).all()
    nested = load_curve(model, x, y, layers=nn.ReLU, batch_size=8, inverse=False)
    # BasicBlock reuses its ReLU: two points per block, in forward order.
    assert list(nested["layer"][:3]) == ["relu", "layer1.0.relu", "layer1.0.relu#1"]
    assert len(nested) == 1 + 2 * 8


def test_list_layers():
    model = _sequential()
    assert list_layers(model) == ["0", "1", "2", "3", "4"]
    assert list_layers(model, types=nn.Linear) == ["0", "2", "4"]
    resnet = torchvision.models.resnet18()
    names = list_layers(resnet, leaves_only=True)
    assert "layer1.0.conv1" in names and "layer1" not in names


def test_unknown_layer_lists_close_matches():
    model = torchvision.models.resnet18()
    with pytest.raises(ValueError, match=r"'layer1\.0\.rlu' not found.*close matches.*layer1\.0\.relu.*list_layers"):
        load_curve(model, torch.zeros(4, 3, 32, 32), torch.tensor([0, 1, 0, 1]), layers=["layer1.0.rlu"])


def test_no_labels_and_mismatch_errors():
    model = _sequential()
    x, y = _data()
    with pytest.raises(ValueError, match="data with no labels"):
        load_curve(model, x)
    with pytest.raises(ValueError, match="data with no labels"):
        load_curve(model, DataLoader(x, batch_size=10))
    with pytest.raises(ValueError, match="same length"):
        load_curve(model, x, y[:10])
    with pytest.raises(ValueError, match="at least two classes"):
        load_curve(model, x, torch.zeros_like(y))


def test_probes_columns():
    model = _sequential()
    x, y = _data()
    curve = load_curve(model, x, y, probes=True)
    assert {"lin_residual", "logistic_loss"} <= set(curve.columns)
    assert ((curve["lin_residual"] >= 0) & (curve["lin_residual"] <= 1)).all()


def test_float64_inputs_into_a_float32_model_are_cast():
    x, y = _data()
    model = _sequential()
    reference = load_curve(model, x, labels=y)
    from_numpy = load_curve(model, x.double().numpy(), labels=y.numpy())  # float64 numpy data
    assert from_numpy["log_d"].tolist() == pytest.approx(reference["log_d"].tolist(), rel=1e-6)
    batches = [(x[:100].double(), y[:100]), (x[100:].double(), y[100:])]
    assert load_curve(model, batches)["log_d"].tolist() == \
        pytest.approx(reference["log_d"].tolist(), rel=1e-6)
    assert next(model.parameters()).dtype == torch.float32  # the model is not converted
