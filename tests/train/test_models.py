import math

import pytest
import torch
from torch import nn

from dnn_spring.train._config import ModelConfig
from dnn_spring.train._models import CNN, MLP, build_model, init_cnn_parameters, init_mlp_parameters

SMALL = dict(depth=4, width=16)


def _weights(model):
    return {k: v for k, v in model.state_dict().items() if k.endswith("weight") and v.dim() > 1}


def test_mlp_shapes_and_layers():
    model = MLP(ModelConfig(**SMALL), 20, 3, seed=0)
    assert model(torch.randn(5, 4, 5)).shape == (5, 3)  # (N, ...) is flattened
    names = model.load_curve_layers()
    assert names == ["input_bn", "blocks.0", "blocks.1", "blocks.2", "head"]
    assert len(names) == SMALL["depth"] + 1
    modules = dict(model.named_modules())
    assert all(name in modules for name in names)
    assert model.logits_layer == "head"
    assert [n for n, _ in model.blocks[0].named_children()] == ["linear", "bn", "act", "drop"]
    assert model.blocks[0].act.negative_slope == 0.0


def test_mlp_state_dict_keys_match_init():
    config = ModelConfig(**SMALL)
    state = init_mlp_parameters(config, 20, 3, generator=torch.Generator().manual_seed(1))
    model = MLP(config, 20, 3, seed=1)
    assert list(state) == list(model.state_dict())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    assert torch.all(state["input_bn.weight"] == 1) and torch.all(state["blocks.0.bn.bias"] == 0)
    assert torch.all(state["blocks.1.bn.running_var"] == 1)


def test_generator_and_seed_agree():
    config = ModelConfig(**SMALL)
    a = MLP(config, 20, 3, seed=7)
    b = MLP(config, 20, 3, generator=torch.Generator().manual_seed(7))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    with pytest.raises(ValueError, match="not both"):
        MLP(config, 20, 3, seed=1, generator=torch.Generator())


def test_mlp_wrong_input_size():
    model = MLP(ModelConfig(**SMALL), 20, 3, seed=0)
    with pytest.raises(ValueError, match="20 features"):
        model(torch.randn(2, 21))


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_seed_reproducible_and_global_rng_untouched(arch):
    config = ModelConfig(arch=arch, depth=3, width=8, channels=4)
    before = torch.get_rng_state()
    a = build_model(config, (1, 6, 6), 3, seed=5)
    b = build_model(config, (1, 6, 6), 3, seed=5)
    c = build_model(config, (1, 6, 6), 3, seed=6)
    assert torch.equal(torch.get_rng_state(), before)
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert all(not torch.equal(wa[k], wc[k]) for k in wa)


def test_default_init_matches_pytorch_linear():
    # Same generator state -> the very same draws as nn.Linear's own reset_parameters.
    config = ModelConfig(depth=2, width=7, batchnorm=False)
    state = init_mlp_parameters(config, 5, 3, generator=torch.Generator().manual_seed(3))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        first = nn.Linear(5, 7)
        second = nn.Linear(7, 3)
    torch.testing.assert_close(state["blocks.0.linear.weight"], first.weight.detach())
    torch.testing.assert_close(state["blocks.0.linear.bias"], first.bias.detach())
    torch.testing.assert_close(state["head.weight"], second.weight.detach())
    torch.testing.assert_close(state["head.bias"], second.bias.detach())


def test_default_init_bounds():
    model = MLP(ModelConfig(depth=3, width=200), 50, 10, seed=0)
    layers = [(model.blocks[0].linear, 50), (model.blocks[1].linear, 200), (model.head, 200)]
    for linear, fan_in in layers:
        bound = 1 / math.sqrt(fan_in)
        for p in (linear.weight, linear.bias):
            assert p.abs().max() <= bound
        # U(-b, b) fills its range: max close to b, std b/sqrt(3)
        assert linear.weight.abs().max() > 0.95 * bound
        assert linear.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)


def test_orthogonal_init():
    model = MLP(ModelConfig(depth=3, width=32, init="orthogonal"), 16, 4, seed=0)
    eye = torch.eye
    w0 = model.blocks[0].linear.weight  # (32, 16): orthonormal columns
    torch.testing.assert_close(w0.T @ w0, eye(16), atol=1e-5, rtol=0)
    w1 = model.blocks[1].linear.weight  # square: orthogonal
    torch.testing.assert_close(w1 @ w1.T, eye(32), atol=1e-5, rtol=0)
    head = model.head.weight  # (4, 32): orthonormal rows
    torch.testing.assert_close(head @ head.T, eye(4), atol=1e-5, rtol=0)


def test_identity_init_and_zero_bias():
    config = ModelConfig(depth=3, width=6, init="identity", zero_bias=True)
    model = MLP(config, 4, 3, seed=0)
    torch.testing.assert_close(model.blocks[0].linear.weight, torch.eye(6, 4))
    torch.testing.assert_close(model.blocks[1].linear.weight, torch.eye(6))
    torch.testing.assert_close(model.head.weight, torch.eye(3, 6))
    for name, p in model.named_parameters():
        if name.endswith("linear.bias") or name == "head.bias":
            assert torch.all(p == 0), name
    cnn = CNN(ModelConfig(arch="cnn", depth=2, channels=3, init="identity"), (3, 4, 4), 2, seed=0)
    x = torch.randn(1, 3, 4, 4)
    conv = cnn.blocks[0].conv
    torch.testing.assert_close(nn.functional.conv2d(x, conv.weight, padding=1), x)


def test_kaiming_and_normal_std():
    cases = [("kaiming", 0.0, 2**0.5), ("kaiming", 0.5, (2 / 1.25) ** 0.5), ("normal", 0.0, 1)]
    for init, slope, gain in cases:
        model = MLP(ModelConfig(depth=2, width=400, init=init, slope=slope), 400, 10, seed=0)
        std = model.blocks[0].linear.weight.std().item()
        assert std == pytest.approx(gain / math.sqrt(400), rel=0.02), init


@pytest.mark.parametrize("init", ["default", "orthogonal", "kaiming", "normal", "identity"])
def test_init_scale_scales_weights_only(init):
    def draw(**fields):
        config = ModelConfig(**SMALL, init=init, **fields)
        return init_mlp_parameters(config, 8, 3, generator=torch.Generator().manual_seed(2))

    base, scaled = draw(), draw(init_scale=0.5)
    for key in base:
        if key.endswith("weight") and base[key].dim() > 1:
            torch.testing.assert_close(scaled[key], 0.5 * base[key])
        else:  # biases and BatchNorm untouched
            torch.testing.assert_close(scaled[key], base[key])


def test_zero_bias_keeps_weight_draws():
    def draw(config):
        return init_mlp_parameters(config, 8, 3, generator=torch.Generator().manual_seed(0))

    a, b = draw(ModelConfig(**SMALL)), draw(ModelConfig(**SMALL, zero_bias=True))
    assert torch.equal(a["head.weight"], b["head.weight"])
    assert torch.all(b["head.bias"] == 0) and torch.any(a["head.bias"] != 0)


def test_batchnorm_off_is_identity():
    model = MLP(ModelConfig(**SMALL, batchnorm=False), 8, 3, seed=0)
    assert isinstance(model.input_bn, nn.Identity)
    assert all(isinstance(block.bn, nn.Identity) for block in model.blocks)
    cnn = CNN(ModelConfig(arch="cnn", depth=3, channels=4, batchnorm=False), (1, 4, 4), 2, seed=0)
    assert isinstance(cnn.input_bn, nn.Identity) and isinstance(cnn.blocks[0].bn, nn.Identity)
    assert cnn(torch.randn(2, 1, 4, 4)).shape == (2, 2)


def test_cnn_shapes_and_layers():
    config = ModelConfig(arch="cnn", channels=5)  # depth 8 -> 7 blocks
    model = build_model(config, (3, 10, 10), 10, seed=0)
    assert isinstance(model, CNN)
    assert model(torch.randn(2, 3, 10, 10)).shape == (2, 10)
    names = model.load_curve_layers()
    assert len(names) == 1 + 7 + 1
    assert names[0] == "input_bn" and names[1] == "blocks.0.pool" and names[-1] == "head"
    children = [n for n, _ in model.blocks[0].named_children()]
    assert children == ["conv", "bn", "act", "pool", "up", "drop"]
    assert model.head.in_features == 5 * 10 * 10
    # the pooled point really is half resolution
    seen = {}

    def hook(module, inputs, output):
        seen["shape"] = output.shape

    model.blocks[3].pool.register_forward_hook(hook)
    model.eval()(torch.randn(2, 3, 10, 10))
    assert seen["shape"] == (2, 5, 5, 5)
    state = init_cnn_parameters(config, (3, 10, 10), 10, generator=torch.Generator().manual_seed(0))
    assert list(state) == list(model.state_dict())


def test_build_model_mlp_flattens_shape():
    model = build_model(ModelConfig(**SMALL), (1, 8, 8), 10, seed=0)
    assert isinstance(model, MLP) and model.n_in == 64
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_errors():
    cnn = ModelConfig(arch="cnn", depth=2, channels=2)
    with pytest.raises(ValueError, match="even H and W"):
        build_model(cnn, (3, 9, 10), 10, seed=0)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        build_model(cnn, (64,), 10, seed=0)
    with pytest.raises(ValueError, match="`n_in` must be a positive int"):
        MLP(ModelConfig(), 0, 10)
    with pytest.raises(TypeError, match="ModelConfig"):
        MLP({"depth": 3}, 4, 2)
