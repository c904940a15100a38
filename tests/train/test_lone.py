"""The lone run's plain kernels (LoneMLP) against float64 references and the grouped path."""

import copy

import pytest
import torch

from dnn_spring.train._config import RunConfig
from dnn_spring.train._data import load_dataset
from dnn_spring.train._group import GroupLoop, train_group
from dnn_spring.train._lone_mlp import LoneMLP
from dnn_spring.train._run import train_run

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = RunConfig().replace(depth=4, width=32, epochs=3, batch_size=10)
DATA = load_dataset(BASE.data, flatten=True)


def _reference_logits(model, x, masks, slope):
    """A float64 nn.Module forward in training mode, with the lone run's dropout masks."""
    x = model.input_bn(x)
    for i, block in enumerate(model.blocks):
        x = torch.nn.functional.leaky_relu(block.bn(block.linear(x)), slope)
        if masks is not None:
            x = x * masks[i, 0].t().double()
    return model.head(x)


# The biases a BatchNorm follows (and so the next running mean): their exact gradient is
# zero, so in float32 and in float64 Adam steps them by the sign of rounding noise.
_SHIFTS_BEFORE_BN = ("input_bn.bias", "linear.bias", "bn.running_mean")


@pytest.mark.parametrize("config", [
    BASE.replace(seed=3, slope=0.3, dropout=0.1, noise=0.2, weight_decay=1e-3),
    BASE.replace(seed=4, slope=0.0, batchnorm=False, optimizer="sgd", lr=0.05),
], ids=["adam-bn-dropout-noise", "sgd-no-bn"])
def test_lone_steps_follow_a_float64_module_and_torch_optimizer(config):
    """Ten steps of the lone model against the exported module in float64, stepped by
    torch.optim on the same batches and dropout masks."""
    fit = GroupLoop([config], DATA, torch.device("cpu"), lone=True)
    lone = fit.model
    assert isinstance(lone, LoneMLP) and lone.weights.flat.shape[0] == 1  # no phantom row
    ref = copy.deepcopy(lone.export(0)).double().train()
    kind = torch.optim.Adam if config.train.optimizer == "adam" else torch.optim.SGD
    opt = kind(ref.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    xe, ye = fit.epoch_data()
    assert xe.shape == (1, len(DATA.y_train), DATA.x_train.shape[1])
    for s in range(0, 100, 10):
        xb, yb = xe[:, s:s + 10], ye[:, s:s + 10]
        masks = lone.dropout_masks(10)  # the masks of this step (the counter moves in step)
        loss = lone.step(xb, yb)
        ref_loss = torch.nn.functional.cross_entropy(
            _reference_logits(ref, xb[0].double(), masks, config.model.slope), yb[0])
        opt.zero_grad()
        ref_loss.backward()
        opt.step()
        assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-4)
    state = lone.export(0).state_dict()
    for name, ref_value in ref.state_dict().items():
        if config.model.batchnorm and name.endswith(_SHIFTS_BEFORE_BN):
            continue  # a shift that BatchNorm takes out has a zero gradient: Adam walks on noise
        torch.testing.assert_close(state[name].to(ref_value.dtype), ref_value, rtol=1e-4, atol=1e-5,
                                   msg=name)


def test_lone_record_is_seeded_and_agrees_with_the_grouped_record():
    config = BASE.replace(seed=5, slope=0.2, dropout=0.05, noise=0.1, curve_every=3)
    lone, again = train_run(config), train_run(config)
    grouped = train_run(config, grouped=True)
    assert {k: v for k, v in lone.items() if k != "wall_time"} == \
        {k: v for k, v in again.items() if k != "wall_time"}  # same seed, same bits
    assert grouped == {**grouped, **train_group([config])[0], "wall_time": grouped["wall_time"]}
    for key in ("status", "stop_reason", "epochs_run", "layers", "regime"):
        assert lone[key] == grouped[key], key
    n_test = len(DATA.y_test)
    assert abs(lone["test_acc"] - grouped["test_acc"]) * n_test <= 20  # rounding, 3 epochs
    assert lone["log_d"] == pytest.approx(grouped["log_d"], abs=0.05)
    assert lone["log_d"] != grouped["log_d"]  # other kernels: other last bits
    assert [t["epoch"] for t in lone["trajectory"]] == [0, 3]


def test_a_lone_cnn_and_a_grouped_mlp_are_groups_of_one():
    mlp = GroupLoop([BASE], DATA, torch.device("cpu"))
    assert not isinstance(mlp.model, LoneMLP) and mlp.model.weights.flat.shape[0] == 2
    cnn = BASE.replace(arch="cnn", epochs=1, batch_size=64)
    record = train_run(cnn)
    assert record["status"] == "ok"
    assert record["test_acc"] == train_group([cnn])[0]["test_acc"]
