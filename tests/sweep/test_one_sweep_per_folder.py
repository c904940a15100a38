"""One sweep per folder, live checkpoints, honest labels and safe model loading
(issue 30, items 5, 6 and 7)."""

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from dnn_spring.cli import main
from dnn_spring.sweep._locks import FolderBusyError, held, running_lock
from dnn_spring.sweep._runner import run_sweep

from test_nothing_lost import _one_line  # tests/ is on sys.path
from test_sweep import tiny_grid, unit

HOLD = textwrap.dedent("""
    import sys, time
    from dnn_spring.sweep._locks import folder_lock, running_lock
    what, path = sys.argv[1], sys.argv[2]
    with (folder_lock(path) if what == "folder" else running_lock(path)):
        print("held", flush=True)
        time.sleep(600)
""")


@pytest.fixture
def holder():
    """Start a process that holds a lock until it is killed."""
    procs = []

    def start(what, path):
        proc = subprocess.Popen([sys.executable, "-c", HOLD, what, str(path)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_a_second_sweep_in_the_folder_refuses_in_one_line(tmp_path, holder, capsys):
    proc = holder("folder", tmp_path)
    calls = []
    with pytest.raises(FolderBusyError, match=f"pid {proc.pid} on "):
        run_sweep(tiny_grid(), tmp_path, executor="debug", progress=False,
                  chunk_fn=lambda *a, **k: calls.append(a))
    assert calls == [] and not list(tmp_path.glob("*.json"))  # nothing trained, nothing written
    status, err = _one_line(["sweep", "ns_nl", "--preset", "quick", "--seeds", "1", "--epochs", "1",
                             "--executor", "debug", "--no-progress", "--out", str(tmp_path)], capsys)
    assert status == 1 and f"{tmp_path} is in use by another sweep (pid {proc.pid}" in err
    assert "give this one another --out" in err
    # the kernel drops the lock of a killed sweep: the next sweep runs
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    summary = run_sweep(tiny_grid(), tmp_path, executor="debug", progress=False, chunk_fn=unit())
    assert summary["ok"] == summary["total"] == 9


def test_a_live_checkpoint_is_never_stale(tmp_path, holder):
    folder = tmp_path / ".checkpoints"
    folder.mkdir()
    live, dead = folder / "0123live.pt", folder / "4567dead.pt"
    live.write_bytes(b"state")
    dead.write_bytes(b"state")
    holder("group", live)
    assert held(live) and not held(dead)
    run_sweep(tiny_grid(), tmp_path, executor="debug", progress=False, chunk_fn=unit())
    assert live.exists() and not dead.exists()  # another grid's running group keeps its state


def test_the_running_lock_goes_with_its_group(tmp_path):
    checkpoint = tmp_path / ".checkpoints" / "abc.pt"
    with running_lock(checkpoint) as path:
        assert path.exists()
    assert not path.exists() and not held(checkpoint)


def test_the_dry_run_counts_distinct_configs(tmp_path, capsys):
    argv = ["sweep", "ns_nl", "--preset", "quick", "--seeds", "1", "--dry-run",
            "--out", str(tmp_path / "empty")]
    assert main(argv + ["--set", "noise=0"]) == 0
    once = capsys.readouterr()
    assert main(argv + ["--set", "noise=0,0,0"]) == 0
    thrice = capsys.readouterr()
    n = len(once.out.splitlines())
    assert len(thrice.out.splitlines()) == n  # each config listed once
    assert f"{n} distinct configs ({2 * n} repeated in the grid, counted once), 0 finished, " \
           f"{n} to run" in thrice.err
    assert f"{n} distinct configs, 0 finished, {n} to run" in once.err


@pytest.mark.parametrize("argv", [["train", "--n-train", "1"], ["train", "--n-train", "9"],
                                  ["sweep", "ns_nl", "--preset", "quick", "--set", "n_train=1",
                                   "--dry-run"]])
def test_too_few_samples_are_refused_up_front(argv, tmp_path, capsys):
    status, err = _one_line(argv + ["--out", str(tmp_path / "out.json")], capsys)
    assert status == 2 and "`n_train` must be 0 (the data set's default) or at least 10" in err
    assert "diverged" not in err and not (tmp_path / "out.json").exists()


# ---------------------------------------------------------------- model loading
class Payload:
    def __init__(self, flag):
        self.flag = str(flag)

    def __reduce__(self):  # what a hostile file does at load time
        return (open, (self.flag, "w"))


def _diagnose(model, *extra):
    cli = [str(Path(sys.executable).with_name("dnn-spring")), "diagnose", "--model", str(model),
           "--dataset", "digits", *extra]
    return subprocess.run(cli, capture_output=True, text=True)


@pytest.mark.slow
def test_a_pickled_payload_is_not_run_without_trust(tmp_path):
    flag = tmp_path / "PWNED"
    torch.save(Payload(flag), tmp_path / "evil.pt")
    done = _diagnose(tmp_path / "evil.pt")
    assert done.returncode == 2 and not flag.exists(), done.stderr
    assert done.stderr.count("\n") == 1 and "pass --trust to load it" in done.stderr
    assert "it names io.open" in done.stderr


@pytest.mark.slow
def test_a_whole_module_needs_trust_and_says_what_it_does(tmp_path):
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                        nn.Linear(16, 10))
    torch.save(seq, tmp_path / "whole.pt")
    refused = _diagnose(tmp_path / "whole.pt")
    assert refused.returncode == 2 and "(it names torch.nn.modules." in refused.stderr
    trusted = _diagnose(tmp_path / "whole.pt", "--trust", "--json")
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stderr.startswith(f"dnn-spring diagnose: --trust: unpickling {tmp_path / 'whole.pt'}"
                                     " with torch.load(weights_only=False)")
    assert json.loads(trusted.stdout)["layers"][0]["layer"] == "input"


def test_train_save_model_is_read_with_weights_only(tmp_path):
    net = tmp_path / "net.pt"
    assert main(["train", "--depth", "3", "--width", "16", "--epochs", "1", "--no-progress",
                 "--threads", "1", "--save-model", str(net)]) == 0
    saved = torch.load(net, weights_only=True)  # no code in it
    assert saved["format"] == "dnn-spring-model/1" and saved["model"]["depth"] == 3
    from dnn_spring.cli.diagnose import read_model

    model = read_model(net)
    assert not model.training and type(model).__name__ == "MLP"
    x = torch.randn(5, 64)
    assert model(x).shape == (5, 10)


@pytest.mark.slow
def test_a_folder_as_the_model_says_so(tmp_path):
    done = _diagnose(tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "is a folder; give the saved model's file" in done.stderr
