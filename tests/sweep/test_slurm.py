"""Sweeps through a real Slurm: slurmctld and slurmd on localhost (tests/slurm/).

As root the fixture installs Debian's slurm-wlm and munge when missing and
starts the one-node cluster of tests/slurm/slurm.conf; if that fails the
tests fail.  Without root they run against a cluster that is already up, or
skip, saying why.  Tiny grids and few epochs keep them to a few minutes.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from dnn_spring.sweep._store import collect

pytestmark = pytest.mark.slow  # the fast loop (make test-fast) leaves these out

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("dnn-spring")
START = ROOT / "tests" / "slurm" / "start_cluster.sh"
# 2 noise values × 2 slopes × 1 seed on the embedded MNIST, one thread per task
GRID = ["--preset", "quick", "--seeds", "1", "--set", "noise=0,0.4", "--set", "slope=0,1",
        "--cpus", "1", "--no-progress"]


def _running(*names) -> bool:
    return subprocess.run(["pgrep", "-x", *names], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def slurm():
    """A one-node cluster for this module; stopped afterwards when this fixture started it."""
    if os.geteuid() != 0:
        up = shutil.which("sinfo") and subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout.strip() in ("idle", "mixed")
        if not up:
            pytest.skip("no Slurm cluster is up, and starting one (tests/slurm/start_cluster.sh) needs root")
    had = {"slurmctld": _running("slurmctld"), "munged": _running("munged")}
    done = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or "slurm ready" not in done.stdout:
        pytest.fail(f"Slurm did not start (tests/slurm/start_cluster.sh, exit {done.returncode}):\n"
                    f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    yield True
    if not had["slurmctld"]:  # leave no daemon behind in CI
        subprocess.run(["bash", str(START.with_name("stop_cluster.sh"))], capture_output=True, timeout=120)
    if not had["munged"]:
        subprocess.run(["pkill", "-x", "munged"], capture_output=True)


def cli(*args, cwd, timeout=300, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(CLI), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def numbers(folder) -> pd.DataFrame:
    table = collect(folder).set_index("key")
    return table[["status", "train_loss", "test_acc", "log_d", "epochs_run"]]


def job_ids(text) -> list:
    line = next(x for x in text.splitlines() if "submitted" in x)
    return line.split("job array ")[1].split(" ")[0].split(",") if "job array" in line else []


def wait_until(predicate, timeout, what, every=1.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_submit_wait_and_collect_match_a_local_run(slurm, tmp_path):
    done = cli("sweep", "ns_nl", *GRID, "--epochs", "3", "--executor", "slurm", "--wait",
               "--out", "slurm", cwd=tmp_path)
    assert "4 ok, 0 diverged, 0 failed, 0 lost" in done.stderr
    assert "sacct" not in done.stderr  # accounting is off here; the sweep never asks it
    # Slurm tasks run in the reproducible mode by default: so does the local reference
    cli("sweep", "ns_nl", *GRID, "--epochs", "3", "--threads", "1", "--reproducible",
        "--out", "local", cwd=tmp_path)
    on_slurm, local = numbers(tmp_path / "slurm"), numbers(tmp_path / "local")
    assert len(on_slurm) == 4 and set(on_slurm["status"]) == {"ok"}
    assert set(collect(tmp_path / "slurm")["reproducible"]) == {True}
    pd.testing.assert_frame_equal(on_slurm.sort_index(), local.sort_index())
    status = json.loads(cli("status", "slurm", "--json", cwd=tmp_path).stdout)
    assert (status["done"], status["running"], status["pending"], status["missing"]) == (4, 0, 0, 0)
    assert all(Path(t["stderr"]).is_file() for t in status["tasks"])
    listing = cli("status", "slurm", "--all-tasks", cwd=tmp_path).stdout
    assert listing.startswith("slurm: 4 done, 0 failed, 0 running, 0 pending, 0 missing")
    assert "GONE" in listing and status["tasks"][0]["stderr"] in listing


def test_cancel_part_way_then_resubmit_runs_only_what_is_missing(slurm, tmp_path):
    # 4 one-run tasks, at most 2 at a time (--parallel) whatever the machine's cores
    args = ("sweep", "ns_nl", *GRID, "--epochs", "150", "--workers", "4", "--parallel", "2",
            "--executor", "slurm", "--out", "r")
    first = cli(*args, cwd=tmp_path)
    assert "submitted 4 as job array" in first.stderr and "dnn-spring status r" in first.stderr
    # cancel the array as soon as the first record lands
    wait_until(lambda: any((tmp_path / "r").glob("*.json")), 240, "a first record", every=0.2)
    subprocess.run(["scancel", *job_ids(first.stderr)], check=True)
    wait_until(lambda: not subprocess.run(["squeue", "-h", "-j", job_ids(first.stderr)[0]],
                                          capture_output=True, text=True).stdout.strip(),
               60, "the cancelled tasks to leave the queue")
    cancelled = json.loads(cli("status", "r", "--json", cwd=tmp_path).stdout)
    assert cancelled["done"] >= 1 and cancelled["missing"] >= 1
    assert cancelled["done"] + cancelled["missing"] == 4
    assert cancelled["running"] == cancelled["pending"] == 0
    for path in (tmp_path / "r").glob("*.json"):  # whole records only
        assert json.loads(path.read_text())["status"] == "ok"
    second = cli(*args, cwd=tmp_path)
    assert f"{cancelled['done']} already done, 0 still queued" in second.stderr
    assert f"submitted {cancelled['missing']} as job array" in second.stderr
    # submitting while those tasks are queued or running starts no second copy
    third = cli(*args, cwd=tmp_path)
    assert f"{cancelled['missing']} still queued from earlier submissions; submitted 0" in third.stderr
    followed = cli(*args, "--wait", cwd=tmp_path)  # submits nothing; follows what is queued
    assert "0 failed, 0 lost" in followed.stderr
    files = sorted(p.name for p in (tmp_path / "r").iterdir() if p.is_file())
    assert len(files) == 4 and all(f.endswith(".json") for f in files)
    assert set(numbers(tmp_path / "r")["status"]) == {"ok"}


def test_a_task_past_its_time_limit_requeues_and_ends_with_the_local_numbers(slurm, tmp_path):
    """A 1-minute task told to checkpoint 55 s before its limit holds a group that needs
    longer (20 to 80 s of training, by the machine).  Slurm checks limits every 30 s or so,
    so the signal comes 5 to 35 s in: while the task still starts (imports torch: 1 to 20 s,
    by the machine) or while it trains.  Either way the task trains until shortly before
    its end, checkpoints, requeues and goes on (up to 15 times); none of its runs is lost."""
    args = ("sweep", "ns_nl", *GRID, "--epochs", "600")
    done = cli(*args, "--executor", "slurm", "--wait", "--time", "1", "--signal-delay", "55",
               "--requeues", "15", "--out", "slurm", cwd=tmp_path, timeout=900)
    assert "4 ok, 0 diverged, 0 failed, 0 lost" in done.stderr
    status = json.loads(cli("status", "slurm", "--json", cwd=tmp_path).stdout)
    log = "".join(Path(t["stderr"]).read_text() for t in status["tasks"])
    assert "requeueing" in log, log[-3000:]
    cli(*args, "--threads", "1", "--reproducible", "--out", "local", cwd=tmp_path)
    on_slurm, local = numbers(tmp_path / "slurm"), numbers(tmp_path / "local")
    pd.testing.assert_frame_equal(on_slurm.sort_index(), local.sort_index())


def test_a_signal_while_the_task_starts_loses_none_of_its_runs(slurm, tmp_path):
    """SIGUSR2 as soon as the task's log shows submitit running, while it loads its job (and
    torch, seconds on any machine) and before submitit installs its handler: the task notes
    the signal, trains until shortly before the end it announced (90 s on), and its runs all
    end ok in that one task.  Without the early handler the signal ended the task."""
    args = ("sweep", "ns_nl", *GRID, "--epochs", "100", "--out", "r")
    first = cli(*args, "--executor", "slurm", "--time", "2", "--signal-delay", "90", cwd=tmp_path)
    job = re.search(r"(?:job array|Slurm job) (\d+)", first.stderr).group(1)
    logs = tmp_path / "r" / ".submitit"
    wait_until(lambda: any("Starting with" in p.read_text() for p in logs.glob(f"{job}_*.out")),
               240, "the task to start", every=0.05)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    wait_until(lambda: not subprocess.run(["squeue", "-h", "-j", job], capture_output=True,
                                          text=True).stdout.strip(), 300, "the task to end")
    status = json.loads(cli("status", "r", "--json", cwd=tmp_path).stdout)
    log = "".join(Path(t["stderr"]).read_text() for t in status["tasks"])
    assert (status["done"], status["missing"], status["failed"]) == (4, 0, 0), log[-3000:]
    assert "while the task was starting" in log, log[-3000:]


def test_a_signal_delay_as_long_as_the_time_limit_is_refused(tmp_path):
    done = cli("sweep", "ns_nl", *GRID, "--executor", "slurm", "--time", "1", "--signal-delay",
               "60", "--out", "r", cwd=tmp_path, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "dnn-spring sweep: error: `--signal-delay` must be shorter than the time limit (60 s), "
        "got 60 s: every task would be told to stop as it starts"]


def test_a_signal_before_any_handler_is_noted_not_fatal(tmp_path):
    """A submitit task imports dnn_spring while it loads its job: from then on a SIGUSR2 is
    noted (with its time) instead of ending the process, until submitit's handler takes over."""
    code = ("import os, signal, dnn_spring.train._preempt as p; os.kill(os.getpid(), signal.SIGUSR2); "
            "print(p.early_signal()[0])")
    env = {**os.environ, "SUBMITIT_FOLDER": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == str(int(signal.SIGUSR2)), done.stderr
    env.pop("SUBMITIT_FOLDER")  # outside a submitit task the signal keeps its default action
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == -signal.SIGUSR2
