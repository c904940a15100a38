"""A Slurm task told to stop (SIGUSR2) saves at the end of an epoch, requeues, and resumes
to the numbers of an uninterrupted run; without a running Slurm (tests/sweep/test_slurm.py has one)."""

import os
import signal

import pytest

from dnn_spring.train import _group as batched
from dnn_spring.sweep._task import checkpoint_path, run_task
from dnn_spring.sweep._grids import expand_grid
from dnn_spring.train._preempt import Preempted, clear_stop
from dnn_spring.sweep._store import collect
from dnn_spring.sweep._slurm import TaskJob, SlurmOptions

FIELDS = ["status", "epochs_run", "train_loss", "test_acc", "log_d"]


def grid():
    overrides = {"depth": 3, "width": 16, "epochs": 6, "dataset": "digits", "noise": [0.0, 0.4],
                 "slope": [0.0, 1.0]}
    return expand_grid("ns_nl", "quick", overrides, n_seeds=1)


def signal_at_epoch(monkeypatch, epoch):
    """Send this process SIGUSR2 while the group trains ``epoch``."""
    real = batched.GroupLoop.run_epoch

    def run_epoch(self):
        if self.epoch == epoch:
            os.kill(os.getpid(), signal.SIGUSR2)
        return real(self)

    monkeypatch.setattr(batched.GroupLoop, "run_epoch", run_epoch)


def test_a_signalled_task_checkpoints_requeues_and_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    configs = grid()
    run_task(configs, tmp_path / "plain")
    requeued = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: requeued.append(signum))
    try:
        with monkeypatch.context() as patch:
            signal_at_epoch(patch, 3)
            with pytest.raises(Preempted, match="epoch 3 saved"):
                TaskJob()(run_task, configs, out_dir=str(tmp_path / "job"))
        assert requeued == [signal.SIGUSR2]  # submitit's handler ran once, after the save
        assert checkpoint_path(configs, tmp_path / "job").is_file()
        assert not list((tmp_path / "job").glob("*.json"))  # no half-done group written
        TaskJob()(run_task, configs, out_dir=str(tmp_path / "job"))  # the requeued task
    finally:
        signal.signal(signal.SIGUSR2, previous)
        clear_stop()
    plain = collect(tmp_path / "plain").set_index("key")[FIELDS]
    resumed = collect(tmp_path / "job").set_index("key")[FIELDS]
    assert resumed.sort_index().equals(plain.sort_index())
    assert not checkpoint_path(configs, tmp_path / "job").exists()


def test_a_signal_outside_a_checkpointing_group_requeues_at_once(tmp_path):
    configs = grid()[:1]  # one run: trained alone, no checkpoint to wait for
    requeued = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: requeued.append(signum))
    try:
        job = TaskJob()

        def chunk_fn(chunk, **args):
            signal.raise_signal(signal.SIGUSR2)
            raise AssertionError("the signal should have stopped the task")

        with pytest.raises(Preempted, match="outside a checkpointing group"):
            job(chunk_fn, configs, out_dir=str(tmp_path))
        assert requeued == [signal.SIGUSR2]  # submitit's requeue, called once by the job
    finally:
        signal.signal(signal.SIGUSR2, previous)
        clear_stop()


def test_slurm_options_become_sbatch_parameters():
    params = SlurmOptions(partition="gpu", time_min=30, gpus=1, cpus=4, mem_gb=16, parallel=8,
                          qos="high", account="lab", extra=("constraint=a100", "--exclusive="),
                          signal_delay_s=60).parameters()
    assert params == {"timeout_min": 30, "cpus_per_task": 4, "gpus_per_node": 1,
                      "slurm_array_parallelism": 8, "slurm_signal_delay_s": 60,
                      "slurm_partition": "gpu", "slurm_qos": "high", "slurm_account": "lab",
                      "mem_gb": 16, "slurm_additional_parameters": {"constraint": "a100",
                                                                    "exclusive": True}}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        SlurmOptions(extra=("exclusive",)).parameters()
    with pytest.raises(ValueError, match="--time is set by dnn-spring"):
        SlurmOptions(extra=("time=5",)).parameters()


def test_a_requeued_chunk_skips_its_finished_groups(tmp_path, monkeypatch):
    """A chunk of two groups, stopped in the second: the requeued task trains only that one."""
    import functools

    from dnn_spring.sweep import _task as chunk_module

    configs = grid()
    monkeypatch.setattr(chunk_module, "max_group_size", lambda config, device="cpu": 2)
    run_task(configs, tmp_path / "plain")
    trained = []

    def counting_group(group, **kwargs):
        trained.append([c.key() for c in group])
        return batched.train_group(group, **kwargs)

    unit = functools.partial(run_task, group_fn=counting_group)
    real, seen = batched.GroupLoop.run_epoch, []

    def run_epoch(self):
        seen.append(self.epoch)
        if seen.count(3) == 2 and self.epoch == 3:  # epoch 3 of the second group
            os.kill(os.getpid(), signal.SIGUSR2)
        return real(self)

    requeued = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: requeued.append(signum))
    try:
        with monkeypatch.context() as patch:
            patch.setattr(batched.GroupLoop, "run_epoch", run_epoch)
            with pytest.raises(Preempted):
                TaskJob()(unit, configs, out_dir=str(tmp_path / "job"))
        assert len(list((tmp_path / "job").glob("*.json"))) == 2 and requeued
        trained.clear()
        TaskJob()(unit, configs, out_dir=str(tmp_path / "job"))
    finally:
        signal.signal(signal.SIGUSR2, previous)
        clear_stop()
    assert trained == [[c.key() for c in configs[2:]]]  # the first group was not retrained
    plain = collect(tmp_path / "plain").set_index("key")[FIELDS]
    resumed = collect(tmp_path / "job").set_index("key")[FIELDS]
    assert resumed.sort_index().equals(plain.sort_index())
