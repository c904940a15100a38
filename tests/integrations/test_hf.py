"""The Hugging Face Trainer callback, with transformers installed by the test extra (no skip)."""

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

from dnn_spring import LoadCurveTracker, load_curve
from dnn_spring.integrations.hf import LoadCurveCallback

transformers.logging.set_verbosity_error()
LAYERS = ["transformer.h.0", "transformer.h.1", "transformer.h.2", "lm_head"]  # the default rule


def _model(seed=0):
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(n_layer=3, n_embd=32, n_head=2, vocab_size=24,
                                      n_positions=16, bos_token_id=0, eos_token_id=0))


def _sequences(n, seed):
    """Token sequences whose class (0..3) sets the step between tokens; some are right-padded."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    start = torch.randint(0, 24, (n, 1), generator=g)
    ids = (start + (labels[:, None] + 1) * torch.arange(12)) % 24
    mask = torch.ones_like(ids)
    mask[::3, 9:] = 0  # every third sequence has 9 tokens
    return ids, mask, labels


def _probe(batch=16):
    ids, mask, labels = _sequences(64, seed=1)
    return [{"input_ids": ids[i:i + batch], "attention_mask": mask[i:i + batch],
             "labels": labels[i:i + batch]} for i in range(0, 64, batch)]


def _train_set():
    ids, mask, _ = _sequences(96, seed=2)
    return [{"input_ids": i, "attention_mask": m, "labels": torch.where(m.bool(), i, -100)}
            for i, m in zip(ids, mask)]


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=8,
                learning_rate=5e-3, report_to="none", save_strategy="no", use_cpu=True,
                disable_tqdm=True, logging_strategy="no", seed=0)
    return TrainingArguments(**{**base, **kw})


class _Snapshots(TrainerCallback):
    """Copies of the model at the end of the steps the load-curve callback measures."""

    def __init__(self, every):
        self.every, self.models = every, {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self.models[state.global_step] = copy.deepcopy(model)


class _Reporter(TrainerCallback):
    """Stands in for a report_to integration: records what on_log hands it."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


def test_rows_equal_load_curve_at_the_same_steps_and_reach_the_logs(tmp_path):
    probe = _probe()
    callback = LoadCurveCallback(probe, every=2)
    snapshots, reporter = _Snapshots(2), _Reporter()
    trainer = Trainer(model=_model(), args=_args(tmp_path, logging_strategy="steps", logging_steps=2),
                      train_dataset=_train_set(), callbacks=[snapshots, callback, reporter])
    trainer.train()
    history = callback.history
    assert sorted(history["step"].unique()) == [2, 4]
    assert list(history["layer"].unique()) == LAYERS  # the blocks and the head
    for step, model in snapshots.models.items():
        want = load_curve(model, probe, layers=LAYERS, pool="mean", inverse=False)
        got = history[history["step"] == step]
        np.testing.assert_allclose(got["log_d"], want["log_d"], rtol=1e-10)
    # the same columns as the tracker's
    tracker = LoadCurveTracker(trainer.model, probe, layers=LAYERS, pool="mean")
    assert list(history.columns) == list(tracker.measure().columns)
    # logged through Trainer.log: the log history and every on_log listener
    logged = [e for e in trainer.state.log_history if "load_curve/c" in e]
    assert [e["step"] for e in logged] == [2, 4]
    last = history[history["step"] == 4]
    for layer, log_d in zip(last["layer"], last["log_d"]):
        assert logged[-1][f"load_curve/log_d/{layer}"] == pytest.approx(log_d, rel=1e-12)
    assert logged[-1]["load_curve/v"] == pytest.approx(last["v"].iloc[0], rel=1e-12)
    assert sum("load_curve/c" in logs for logs in reporter.logs) == 2
    # the Trainer's own logs of those steps (the loss) still happen
    assert [e["step"] for e in trainer.state.log_history if "loss" in e] == [2, 4]
    assert trainer.model.training  # the measurement restored the training mode


def test_next_token_curves_at_evaluations_with_an_added_callback(tmp_path):
    ids, mask, _ = _sequences(40, seed=3)
    probe = [{"input_ids": ids[i:i + 20], "attention_mask": mask[i:i + 20]} for i in (0, 20)]
    callback = LoadCurveCallback(probe, every=None, target="next_token", at_evaluate=True,
                                 at_start=True, layers=["transformer.drop", *LAYERS])
    trainer = Trainer(model=_model(), train_dataset=_train_set(), eval_dataset=_train_set()[:16],
                      args=_args(tmp_path, eval_strategy="steps", eval_steps=2))
    trainer.add_callback(callback)  # found at on_train_begin
    trainer.train()
    trainer.evaluate()  # step 4 again: measured once
    history = callback.history
    assert sorted(history["step"].unique()) == [0, 2, 4]
    want = load_curve(trainer.model, probe, layers=["transformer.drop", *LAYERS],
                      target="next_token", inverse=False)
    np.testing.assert_allclose(history[history["step"] == 4]["log_d"], want["log_d"], rtol=1e-10)
    assert [e["step"] for e in trainer.state.log_history if "load_curve/c" in e] == [0, 2, 4]


def test_bad_arguments_get_one_line():
    with pytest.raises(ValueError, match=r"`every` must be an int >= 1 or None, got 0"):
        LoadCurveCallback(_probe(), every=0)
    with pytest.raises(ValueError, match="pool"):
        LoadCurveCallback(_probe(), pool="median")
    assert LoadCurveCallback(_probe()).history.empty


@pytest.mark.slow
def test_the_package_imports_transformers_only_when_the_callback_is_used():
    code = ("import sys, dnn_spring, dnn_spring.integrations, dnn_spring.capture._blocks; "
            "assert 'transformers' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_a_trainer_the_values_stay_in_the_state_history():
    from transformers import TrainerControl, TrainerState

    callback = LoadCurveCallback(_probe(), every=1)
    state, model = TrainerState(), _model()
    state.global_step, state.epoch = 1, 0.5
    with pytest.warns(RuntimeWarning, match="found no transformers.Trainer"):
        callback.on_step_end(None, state, TrainerControl(), model=model)
    assert [e["step"] for e in state.log_history] == [1]
    assert callback.history["layer"].tolist() == LAYERS
