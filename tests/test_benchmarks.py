"""The speed benchmarks run and print every row they promise (tiny settings; no timing asserted)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                          text=True, timeout=600, cwd=BENCH)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_bench_speed_prints_the_plain_loop_train_run_and_each_group():
    out = _run("bench_speed.py", "--n-train", "64", "--epochs", "2", "--less", "1",
               "--full-scale", "1", "--repeat", "1", "--groups", "1", "3")
    for row in ("plain loop", "train_run", "group of 1", "group of 3"):
        assert out.count(f"\n  {row} ") == 2, row  # a row at batch 10 and at full batch
    assert "batch size 10" in out and "batch size full" in out


def test_bench_step_prints_every_section():
    out = _run("bench_step.py", "--n-train", "64", "--steps", "3", "--groups", "2")
    for row in ("plain loop step", "lone (train_run)", "group of 2", "forward", "optimiser",
                "GFLOP/s", "multiply-adds per sample"):
        assert row in out, row


def test_bench_speed_refuses_a_bad_flag():
    done = subprocess.run([sys.executable, str(BENCH / "bench_speed.py"), "--less", "9"],
                          capture_output=True, text=True, timeout=120, cwd=BENCH)
    assert done.returncode == 2 and "--less" in done.stderr
