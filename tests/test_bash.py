"""The bash/ sweep scripts pass presets, environment and extra flags to the runner."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dnn_spring.sweep._grids import SWEEPS

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("dnn-spring")
SCRIPTS = {"ns_nl": "test_pd_ns_nl.sh", "lr_nl": "test_pd_lr_nl.sh", "dp_nl": "test_pd_dp_nl.sh",
           "bm_nl": "test_pd_bm_nl.sh", "cnn": "test_cnn.sh"}

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run_script(name, env, *args, cwd):
    full = {k: v for k, v in os.environ.items()
            if k not in ("PRESET", "DATASET", "DEVICE", "OUTDIR", "WORKERS", "EXECUTOR", "WAIT",
                         "DRY_RUN")}
    full.update(env)
    return subprocess.run(["bash", str(ROOT / "bash" / name), *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=120)


def fake_cli(tmp_path, status=0):
    """A stand-in for dnn-spring that logs its arguments, one call per line; ``(path, log)``."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "fake-dnn-spring"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {log}\nexit {status}\n')
    fake.chmod(0o755)
    return fake, log


@pytest.mark.parametrize("sweep", sorted(SCRIPTS))
@pytest.mark.slow
def test_script_dry_run_reflects_preset_env_and_flags(sweep, tmp_path):
    dry = {"DRY_RUN": "1"} if sweep in ("ns_nl", "cnn") else {}
    extra = () if dry else ("--dry-run",)
    env = {"DNN_SPRING": str(CLI), "PRESET": "quick", "DATASET": "fashionmnist", **dry}
    done = run_script(SCRIPTS[sweep], env, "--set", "epochs=3", "--set", "width=24", *extra,
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    configs = [json.loads(line) for line in done.stdout.splitlines()]
    spec = SWEEPS[sweep]
    assert len(configs) == len(spec.quick_values) * len(spec.quick_slopes) * spec.quick_seeds
    assert {c[spec.axis] for c in configs} == set(spec.quick_values)
    assert {c["dataset"] for c in configs} == {"fashionmnist"}
    assert {c["epochs"] for c in configs} == {3} and {c["width"] for c in configs} == {24}
    assert f"records in results/{sweep}_quick_fashionmnist" in done.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "figs").exists()


@pytest.mark.slow
def test_paper_preset_is_the_default(tmp_path):
    done = run_script("test_pd_lr_nl.sh", {"DNN_SPRING": str(CLI), "OUTDIR": "out/lr"},
                      "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    configs = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(configs) == 720 and {c["dataset"] for c in configs} == {"mnist"}
    assert {c["epochs"] for c in configs} == {200}
    assert "records in out/lr" in done.stderr


def test_script_runs_sweep_collect_plot_in_order(tmp_path):
    fake, log = fake_cli(tmp_path)
    env = {"DNN_SPRING": str(fake), "DEVICE": "cuda", "WORKERS": "3", "EXECUTOR": "slurm",
           "WAIT": "1"}
    done = run_script("test_pd_bm_nl.sh", env, "--seeds", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    sweep, collect, plot = log.read_text().splitlines()
    assert sweep == ("sweep bm_nl --preset paper --out results/bm_nl --executor slurm "
                     "--device cuda --workers 3 --wait --seeds 2")
    assert collect == "collect results/bm_nl --out results/bm_nl.parquet"
    assert plot.startswith("plot phase-diagram results/bm_nl.parquet --axis batch_size")
    assert plot.endswith("--out figs/pd_bm_nl.png --pdf")
    assert (tmp_path / "figs").is_dir()


def test_slurm_without_wait_submits_and_prints_what_to_run_later(tmp_path):
    fake, log = fake_cli(tmp_path)
    done = run_script("test_pd_ns_nl.sh", {"DNN_SPRING": str(fake), "EXECUTOR": "slurm"},
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (sweep,) = log.read_text().splitlines()  # no collect or plot yet
    assert sweep == "sweep ns_nl --preset paper --out results/ns_nl --executor slurm"
    later = done.stdout.splitlines()
    assert later[-2] == f"  {fake} collect results/ns_nl --out results/ns_nl.parquet"
    # the printed plot command runs as printed (its title has spaces and parentheses)
    plot = later[-1].split("&& ", 1)[1]
    subprocess.run(["bash", "-c", plot], cwd=tmp_path, check=True)
    assert log.read_text().splitlines()[-1] == (
        "plot phase-diagram results/ns_nl.parquet --axis noise --title ns_nl (paper) "
        "--out figs/pd_ns_nl.png --pdf")


def test_another_dataset_gets_its_own_results_and_figure(tmp_path):
    fake, log = fake_cli(tmp_path)
    done = run_script("test_pd_ns_nl.sh", {"DNN_SPRING": str(fake), "DATASET": "mnist5k"},
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    sweep, collect, plot = log.read_text().splitlines()
    assert sweep.startswith("sweep ns_nl --preset paper --out results/ns_nl_mnist5k ")
    assert sweep.endswith("--dataset mnist5k")
    assert collect == "collect results/ns_nl_mnist5k --out results/ns_nl_mnist5k.parquet"
    assert plot.endswith("--out figs/pd_ns_nl_mnist5k.png --pdf")


def test_script_stops_when_the_sweep_fails(tmp_path):
    fake, log = fake_cli(tmp_path, status=3)
    done = run_script("test_pd_ns_nl.sh", {"DNN_SPRING": str(fake)}, cwd=tmp_path)
    assert done.returncode == 3
    assert len(log.read_text().splitlines()) == 1
