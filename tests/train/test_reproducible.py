"""The reproducible mode (dnn_spring.train._reproducible) and its fixed-order evaluation (dnn_spring.train._fixed_order).

The cross-CPU promise is checked the way one CPU can: the evaluation of one
trained model must give the same bits under every kernel choice this machine
has (ATen's DEFAULT, AVX2 and native kernels, MKL's SSE2-compatible and AVX2
branches, oneDNN capped at SSE4.1) and under 1 and 2 threads, in separate
processes.
The values are checked against float64 / long-double references.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dnn_spring.train import _reproducible as reproducible
from dnn_spring.cli import main
from dnn_spring.train._config import RunConfig
from dnn_spring.train._fixed_order import exact_matmul, exact_stats
from dnn_spring.train._run import train_run

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(dataset="digits", depth=3, width=16, epochs=3, lr=1e-3)
# one config per architecture: a minibatch MLP with noise and dropout, a CNN
CONFIGS = {"mlp": RunConfig().replace(**SMALL, batch_size=64, noise=0.3, dropout=0.1, slope=0.5,
                                      seed=7),
           "cnn": RunConfig().replace(**SMALL, arch="cnn", channels=4, n_train=300,
                                      batch_size=100, seed=5)}
# what the evaluation must not depend on: kernels, BLAS branches, threads
KERNELS = ({"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "THREADS": "1"},
           {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "SSE41",
            "THREADS": "2"},
           {"THREADS": "2"})
EVALUATE = """
import json, os, sys, torch
import dnn_spring
from dnn_spring.train._config import RunConfig
from dnn_spring.train._data import load_dataset
from dnn_spring.train._fixed_order import evaluate
torch.set_num_threads(int(os.environ["THREADS"]))
out = {}
for path in sys.argv[1:]:
    model, flat = torch.load(path, weights_only=False)
    config = RunConfig.from_flat(flat)
    train_acc, test_acc, _, frame = evaluate(model, load_dataset(config.data, flatten=config.model.arch == "mlp"))
    out[path] = [train_acc, test_acc, frame.drop(columns="near_singular").values.tolist()]
print(json.dumps(out))
"""


def _run(code_or_args, env, *, timeout=300):
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


CLI = "import sys; from dnn_spring.cli import main; sys.exit(main())"


def _clean_env() -> dict:
    """This process's environment without the mode and anything it sets."""
    drop = (reproducible.ENV_FLAG, *reproducible.SETTINGS)
    return {k: v for k, v in os.environ.items() if k not in drop}


@pytest.mark.slow
def test_the_evaluation_gives_the_same_bits_under_every_kernel_and_thread_count(tmp_path):
    paths = []
    for name, config in CONFIGS.items():
        record, model = train_run(config, return_model=True)
        assert record["status"] == "ok"
        paths.append(str(tmp_path / f"{name}.pt"))
        torch.save((model, config.flat()), paths[-1])
    # numpy's LAPACK is pinned as the mode pins it; everything else varies
    pinned = {k: reproducible.SETTINGS[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                     "NPY_DISABLE_CPU_FEATURES")}
    outputs = []
    for kernels in KERNELS:
        done = _run([ "-c", EVALUATE, *paths], {**_clean_env(), **pinned, **kernels})
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] == outputs[2]
    values = json.loads(outputs[0])
    assert all(np.isfinite(row[5]) for rows in values.values() for row in rows[2])  # log D


@pytest.mark.parametrize("k, tol", [(300, 1e-11), (5000, 1e-15)])  # two slices, three
def test_exact_products_match_a_long_double_reference_and_ignore_the_thread_count(k, tol):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(200, k, generator=gen, dtype=torch.float64) * 10.0 ** torch.randint(
        -3, 4, (200, 1), generator=gen)
    b = torch.randn(k, 40, generator=gen, dtype=torch.float64)
    ref = a.numpy().astype(np.longdouble) @ b.numpy().astype(np.longdouble)
    got = exact_matmul(a, b)
    scale = np.abs(a.numpy()).max(1, keepdims=True) * np.abs(b.numpy()).max(0, keepdims=True) * k
    assert float(np.max(np.abs(got.numpy() - ref) / scale)) < tol
    torch.set_num_threads(2)
    assert torch.equal(exact_matmul(a, b), got)
    assert torch.equal(exact_matmul(a[:77], b), got[:77])  # a row's value does not depend on the others


def test_the_fixed_order_statistics_match_a_float64_reference():
    gen = torch.Generator().manual_seed(1)
    n, p, c = 600, 12, 4
    y = torch.arange(n) % c
    x = torch.randn(n, p, generator=gen, dtype=torch.float64) + 2.0 * torch.eye(c, p, dtype=torch.float64)[y]
    out = exact_stats(x, y, c)
    xs, ys = x.numpy(), y.numpy()
    mu = xs.mean(0)
    means = np.stack([xs[ys == k].mean(0) for k in range(c)])
    ss_b = sum((ys == k).mean() * np.outer(means[k] - mu, means[k] - mu) for k in range(c))
    z = xs - means[ys]
    ss_w = z.T @ z / n
    assert out["log_d"] == pytest.approx(np.log(np.trace(ss_w @ np.linalg.pinv(ss_b))), rel=1e-10)
    assert out["log_inv_d"] == pytest.approx(np.log(np.trace(ss_b @ np.linalg.inv(ss_w))), rel=1e-10)
    assert out["log_trace_ratio"] == pytest.approx(np.log(np.trace(ss_w) / np.trace(ss_b)), rel=1e-10)
    assert out["rank_b"] == c - 1 and out["max_rank_b"] == c - 1
    assert out["log_d_pinv32"] == pytest.approx(out["log_d"], abs=1e-4)


@pytest.mark.slow
def test_the_command_line_restarts_itself_in_the_mode(tmp_path):
    """Even under ATEN_CPU_CAPABILITY=default the mode runs AVX2 kernels, and the record says so."""
    flags = ["train", "--dataset", "digits", "--depth", "3", "--width", "16", "--epochs", "2",
             "--no-progress"]
    env = {**_clean_env(), "ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"}
    done = _run(["-c", CLI, *flags, "--reproducible", "--out", str(tmp_path / "a.json")], env)
    assert done.returncode == 0, done.stderr[-2000:]
    first = json.loads((tmp_path / "a.json").read_text())
    assert first["reproducible"] is True and first["cpu_capability"] == "AVX2"
    env = {**_clean_env(), reproducible.ENV_FLAG: "1", "OMP_NUM_THREADS": "1"}
    done = _run(["-c", CLI, *flags, "--out", str(tmp_path / "b.json")], env)
    assert done.returncode == 0, done.stderr[-2000:]
    second = json.loads((tmp_path / "b.json").read_text())
    assert {k for k in first if first[k] != second[k]} == {"wall_time"}


@pytest.mark.slow
def test_a_process_that_loaded_torch_first_is_refused_in_one_line():
    code = ("import os, torch; os.environ['DNN_SPRING_REPRODUCIBLE'] = '1'\n"
            "from dnn_spring import RunConfig, train_run\n"
            "try:\n    train_run(RunConfig().replace(epochs=1))\n"
            "except RuntimeError as exc:\n    print(exc)\n")
    done = _run(code, _clean_env())
    assert done.returncode == 0, done.stderr[-2000:]
    names = ", ".join(reproducible.SETTINGS)
    assert done.stdout.strip().splitlines() == [
        f"DNN_SPRING_REPRODUCIBLE=1 needs {names} set before torch loads, and this process "
        "loaded torch (or numpy) first: set DNN_SPRING_REPRODUCIBLE=1 before Python starts, or "
        "import dnn_spring before torch and numpy"]


def test_reproducible_called_from_python_without_the_mode_exits_2(capsys, monkeypatch):
    monkeypatch.delenv(reproducible.ENV_FLAG, raising=False)
    assert main(["train", "--reproducible", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dnn-spring train: error: dnn-spring train --reproducible needs its settings "
                   "before torch loads: set DNN_SPRING_REPRODUCIBLE=1 in this process's environment"]


def test_native_records_say_they_are_not_reproducible():
    record = train_run(RunConfig().replace(**{**SMALL, "epochs": 1}))
    assert record["reproducible"] is False
