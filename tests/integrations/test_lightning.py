"""The Lightning callback, with Lightning installed by the test extra (no skip)."""

import lightning
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dnn_spring import load_curve
from dnn_spring.integrations.lightning import LoadCurveCallback


class Net(lightning.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                                  nn.Linear(32, 4))

    def forward(self, x):
        return self.body(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def test_callback_measures_every_epoch_and_logs(tmp_path):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 4
    x = 3 * torch.randn(4, 20, generator=g)[y] + torch.randn(400, 20, generator=g)
    callback = LoadCurveCallback(x, y, every=2)  # the default points: through the wrapper
    trainer = lightning.Trainer(max_epochs=4, callbacks=[callback], logger=False,
                                enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, default_root_dir=tmp_path,
                                accelerator="cpu")
    net = Net()
    trainer.fit(net, DataLoader(TensorDataset(x, y), batch_size=50))
    history = callback.tracker.history
    assert sorted(history["epoch"].unique()) == [2, 4]
    assert list(history["layer"].unique()) == ["input", "body.1", "body.3", "body.4"]
    assert list(history.drop_duplicates("layer")["is_logits"]) == [False, False, False, True]
    final = load_curve(net, x, y)["log_d"]
    np.testing.assert_allclose(history[history["epoch"] == 4]["log_d"], final, rtol=1e-6)
    assert np.isfinite(float(trainer.callback_metrics["load_curve/c"]))
    assert np.isfinite(float(trainer.callback_metrics["load_curve/v"]))
    assert callback.history is callback.tracker.history or callback.history.equals(history)


@pytest.mark.slow
def test_the_package_imports_lightning_only_when_the_callback_is_used():
    import subprocess
    import sys

    code = "import sys, dnn_spring; assert 'lightning' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_step_interval_counts_batches(tmp_path):
    x, y = torch.randn(120, 20), torch.arange(120) % 4
    callback = LoadCurveCallback(x, y, every=3, interval="step", log=False)
    trainer = lightning.Trainer(max_epochs=1, callbacks=[callback], logger=False,
                                enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, default_root_dir=tmp_path,
                                accelerator="cpu")
    trainer.fit(Net(), DataLoader(TensorDataset(x, y), batch_size=20))  # 6 batches
    assert sorted(callback.tracker.history["step"].unique()) == [3, 6]
