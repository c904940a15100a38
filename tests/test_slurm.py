"""Sweeps through a real Slurm: slurmctld and slurmd on localhost (tests/slurm/).

As root the fixture installs Debian's slurm-wlm and munge when missing and
starts the one-node cluster of tests/slurm/slurm.conf; if that fails the
tests fail.  Without root they run against a cluster that is already up, or
skip, saying why.  Tiny grids and few epochs keep them to a few minutes.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from dnn_spring.records import collect

ROOT = Path(__file__).resolve().parents[1]
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
    cli("sweep", "ns_nl", *GRID, "--epochs", "3", "--threads", "1", "--out", "local", cwd=tmp_path)
    on_slurm, local = numbers(tmp_path / "slurm"), numbers(tmp_path / "local")
    assert len(on_slurm) == 4 and set(on_slurm["status"]) == {"ok"}
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
    so the signal comes 0 to 20 s in; each time the task stops (at the end of an epoch,
    with a checkpoint, once training runs), requeues, and goes on (up to 15 times)."""
    args = ("sweep", "ns_nl", *GRID, "--epochs", "600")
    done = cli(*args, "--executor", "slurm", "--wait", "--time", "1", "--signal-delay", "55",
               "--requeues", "15", "--out", "slurm", cwd=tmp_path, timeout=600)
    assert "4 ok, 0 diverged, 0 failed, 0 lost" in done.stderr
    status = json.loads(cli("status", "slurm", "--json", cwd=tmp_path).stdout)
    log = "".join(Path(t["stderr"]).read_text() for t in status["tasks"])
    assert "requeueing" in log, log[-3000:]
    cli(*args, "--threads", "1", "--out", "local", cwd=tmp_path)
    on_slurm, local = numbers(tmp_path / "slurm"), numbers(tmp_path / "local")
    pd.testing.assert_frame_equal(on_slurm.sort_index(), local.sort_index())
