"""Issue 30: safe writes, sizes checked before allocation, failures that say why, messages.

Writes are tried against a real full filesystem (a 64 KiB tmpfs filled to the
last byte) and a read-only one (a tmpfs mounted ``ro``: root ignores file
modes, not mount flags).
"""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from dnn_spring.cli import main
from dnn_spring.sweep._store import collect, write_record

from test_sweep import fake_record as _fake_record, tiny_grid, unit  # tests/ is on sys.path

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["--dataset", "digits", "--depth", "3", "--width", "8", "--epochs", "1", "--no-progress"]
_CLI = "import sys; from dnn_spring.cli import main; sys.exit(main())"


def _mount(where: Path, *options) -> None:
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(("size=64k", *options)),
                           "tmpfs", str(where)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # the tests run as root (see test_sweep.full_disk)


@pytest.fixture
def disks(tmp_path, monkeypatch):
    """``(full, readonly, fallback)``: a full tmpfs, a read-only tmpfs and $TMPDIR."""
    import tempfile

    full, readonly, fallback = tmp_path / "full", tmp_path / "ro", tmp_path / "tmp"
    fallback.mkdir()
    _mount(full)
    _mount(readonly, "ro")
    monkeypatch.setattr(tempfile, "tempdir", str(fallback))
    monkeypatch.setenv("TMPDIR", str(fallback))
    try:
        with open(full / "filler", "wb", buffering=0) as filler, pytest.raises(OSError):
            while True:  # fill the disk to the last byte
                filler.write(b"x" * 512)
        yield full, readonly, fallback
    finally:
        for where in (full, readonly):
            subprocess.run(["umount", str(where)], check=True)


def fake_record(config):
    """A fake ok record with every column `report` and `plot curvature` read."""
    return {**_fake_record(config), "v": 0.1 + config.train.noise,
            "fit_r2": 0.9 - config.model.slope / 10, "regime": "linear"}


def fake_ok(config, *, device="cpu", progress=False):
    return fake_record(config)


def _kept(fallback: Path, name: str) -> Path:
    return fallback / f"dnn-spring-unsaved-{os.getpid()}-{name}"


def _errors(err: str) -> list:
    return [line for line in err.splitlines() if "error" in line]


# --------------------------------------------------------------------- item 2: safe writes


def test_train_out_on_a_full_disk_keeps_the_record(disks, capsys):
    full, _, fallback = disks
    assert main(["train", *SMALL, "--out", str(full / "run.json")]) == 1
    captured = capsys.readouterr()
    (line,) = _errors(captured.err)
    kept = _kept(fallback, "run.json")
    assert line == (f"dnn-spring train: error: could not write record {full / 'run.json'}: "
                    f"[Errno 28] No space left on device; it was written to {kept} instead")
    assert sorted(p.name for p in full.iterdir()) == ["filler"]  # no 0-byte file, no temp file
    record = json.loads(kept.read_text())
    assert record["status"] == "ok" and record["depth"] == 3 and "record written" not in captured.out


def test_save_model_to_a_read_only_folder_still_writes_out(disks, tmp_path, capsys):
    _, readonly, fallback = disks
    out = tmp_path / "ok.json"
    assert main(["train", *SMALL, "--out", str(out), "--save-model", str(readonly / "net.pt")]) == 1
    captured = capsys.readouterr()
    (line,) = _errors(captured.err)
    assert "Traceback" not in captured.err and "[Errno 30] Read-only file system" in line
    assert line.startswith(f"dnn-spring train: error: could not write model {readonly / 'net.pt'}")
    assert json.loads(out.read_text())["status"] == "ok"
    from dnn_spring.cli.diagnose import read_model

    assert isinstance(read_model(_kept(fallback, "net.pt")), torch.nn.Module)  # the kept copy loads


def test_train_out_to_a_read_only_folder_keeps_the_record(disks, capsys):
    _, readonly, fallback = disks
    assert main(["train", *SMALL, "--out", str(readonly / "run.json")]) == 1
    (line,) = _errors(capsys.readouterr().err)
    assert line.endswith(f"it was written to {_kept(fallback, 'run.json')} instead")
    assert json.loads(_kept(fallback, "run.json").read_text())["status"] == "ok"


@pytest.fixture
def results(tmp_path):
    """A results folder of nine fake ok runs."""
    from dnn_spring.sweep._runner import run_sweep

    folder = tmp_path / "res"
    run_sweep(tiny_grid(), folder, executor="debug", batch=False, progress=False,
              chunk_fn=unit(fake_ok))
    return folder


def test_plot_figure_and_pdf_are_each_tried(disks, results, capsys):
    _, readonly, fallback = disks
    assert main(["plot", "phase-diagram", str(results), "--out", str(readonly / "pd.png"),
                 "--pdf"]) == 1
    lines = _errors(capsys.readouterr().err)
    assert len(lines) == 2  # the PNG failed, the PDF was still tried
    for line, name in zip(lines, ("pd.png", "pd.pdf")):
        assert line.startswith(f"dnn-spring plot: error: could not write figure {readonly / name}")
        assert _kept(fallback, name).read_bytes()[:4] in (b"\x89PNG", b"%PDF")


def test_report_csv_fails_and_the_figure_is_still_written(disks, results, tmp_path, capsys):
    full, _, fallback = disks
    png = tmp_path / "report.png"
    assert main(["report", str(results), "--boot", "20", "--csv", str(full / "rho.csv"),
                 "--out", str(png)]) == 1
    (line,) = _errors(capsys.readouterr().err)
    assert "could not write table" in line and "No space left on device" in line
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert set(pd.read_csv(_kept(fallback, "rho.csv"))["proxy"]) == {
        "abs_c", "v", "fit_r2", "final_log_d", "train_acc", "train_loss"}


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_record_and_table_files_follow_the_umask(tmp_path, mask, mode):
    from dnn_spring.sweep._store import save_table

    config = tiny_grid()[0]
    old = os.umask(mask)
    try:
        path = write_record(fake_record(config), tmp_path)
        table = save_table(collect(tmp_path), tmp_path / "t.parquet")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert stat.S_IMODE(table.stat().st_mode) == mode


# --------------------------------------------------------------------- item 3: sizes


def _one_line(argv, capsys):
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse
        status = exc.code
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return status, err


@pytest.mark.parametrize("argv,words", [
    (["--depth", "100000000"], ["`--depth 100000000 --width 100`", "GiB", "available"]),
    (["--width", "10000000000"], ["`--depth 8 --width 10000000000`", "GiB"]),
    (["--arch", "cnn", "--channels", "10000000"], ["`--depth 8 --channels 10000000`", "CNN"]),
    (["--dataset", "gaussian", "--n-train", "100000000000"], ["`--n-train 100000000000`", "GiB"]),
    (["--threads", "100000"], [f"`--threads` must be <= {os.cpu_count()}", "got 100000"]),
])
def test_train_sizes_are_refused_before_allocation(argv, words, capsys):
    start = time.perf_counter()
    status, err = _one_line(["train", *argv, "--no-progress"], capsys)
    assert status == 2 and err.startswith("dnn-spring train: error: ")
    assert all(w in err for w in words), err
    assert time.perf_counter() - start < 10  # nothing was built


def test_sweep_seeds_are_refused_before_the_grid_is_expanded(capsys):
    start = time.perf_counter()
    status, err = _one_line(["sweep", "ns_nl", "--preset", "quick", "--seeds", "1000000000",
                             "--dry-run"], capsys)
    assert status == 2 and "`--seeds`: the grid has 16000000000 runs" in err and "GiB" in err
    assert time.perf_counter() - start < 10


def test_sweep_threads_and_model_are_checked(capsys):
    status, err = _one_line(["sweep", "ns_nl", "--preset", "quick", "--threads", "100000",
                             "--dry-run"], capsys)
    assert status == 2 and f"`--threads` must be <= {os.cpu_count()}" in err
    status, err = _one_line(["sweep", "ns_nl", "--preset", "quick", "--set", "width=10000000000",
                             "--dry-run"], capsys)
    assert status == 2 and "--width 10000000000" in err


def test_the_limit_is_the_free_memory(monkeypatch, capsys):
    """With 1 MiB free the paper's default MLP (about 5 MB) no longer fits."""
    from dnn_spring.cli import _limits

    monkeypatch.setattr(_limits, "_host_bytes", lambda: 2**20)
    status, err = _one_line(["train", "--no-progress"], capsys)
    assert status == 2 and "0.000977 GiB is available on this machine" in err


@pytest.mark.parametrize("flat", [{}, {"depth": 5, "width": 37}, {"arch": "cnn"},
                                  {"arch": "cnn", "depth": 4, "channels": 7}])
def test_the_weight_estimate_is_a_lower_bound(flat):
    """16 bytes per weight counted must not exceed 16 per parameter of the real model."""
    from dnn_spring.cli._limits import model_bytes
    from dnn_spring.train._config import RunConfig
    from dnn_spring.train._models import build_model

    config = RunConfig.from_flat({**flat, "n_train": 10, "batch_size": 1})
    model = build_model(config.model, (1, 10, 10) if config.model.arch == "cnn" else (100,), 10,
                        seed=0)
    units = config.model.channels * 100 if config.model.arch == "cnn" else config.model.width
    weights = (model_bytes(config) - 4 * units * (config.model.depth - 1)) // 16
    assert weights <= sum(p.numel() for p in model.parameters())


def test_the_fixed_sets_sizes_match_the_loader():
    from dnn_spring.cli._limits import TRAIN_SAMPLES
    from dnn_spring.train._config import DataConfig
    from dnn_spring.train._data import load_dataset

    for name in ("digits", "mnist5k"):
        assert load_dataset(DataConfig(dataset=name, n_train=TRAIN_SAMPLES[name])).n_train == \
            TRAIN_SAMPLES[name]
        with pytest.raises(ValueError, match="n_train"):
            load_dataset(DataConfig(dataset=name, n_train=TRAIN_SAMPLES[name] + 1))


# --------------------------------------------------------------------- item 4: failures


def _failing_sweep(out):
    return ["sweep", "ns_nl", "--preset", "quick", "--seeds", "1", "--set", "noise=0,0.5",
            "--set", "slope=0,1", "--epochs", "1", "--dataset", "mnist",
            "--set", f"data_root={out.parent / 'nowhere'}", "--executor", "debug",
            "--no-progress", "--out", str(out)]


def test_a_sweep_whose_runs_fail_says_why_and_exits_1(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(_failing_sweep(out)) == 1
    err = capsys.readouterr().err.splitlines()
    reasons = [line for line in err if " failed: " in line]
    assert len(reasons) == 1, err  # one reason, once, with its count
    assert reasons[0].startswith("dnn-spring sweep: 4 runs failed: FileNotFoundError: ")
    assert "0 ok" in err[-2] and "4 failed" in err[-2]
    for argv in (["plot", "phase-diagram", str(out), "--out", str(tmp_path / "pd.png")],
                 ["report", str(out)]):
        status, text = _one_line(argv, capsys)
        assert status == 2 and f"{out} has no successful run (status ok)" in text
        assert "{'failed': 4}" in text
    assert not (tmp_path / "pd.png").exists()


@pytest.mark.slow
def test_the_bash_script_does_not_plot_a_table_without_a_successful_run(tmp_path):
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PRESET": "quick", "DATASET": "mnist", "EXECUTOR": "debug",
           "OUTDIR": "res", "DNN_SPRING": str(Path(sys.executable).with_name("dnn-spring"))}
    done = subprocess.run(["bash", str(root / "bash" / "test_pd_ns_nl.sh"), "--seeds", "1",
                           "--set", "noise=0", "--set", "slope=1", "--epochs", "1", "--set",
                           f"data_root={tmp_path / 'nowhere'}", "--no-progress"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "1 run failed: FileNotFoundError" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("dnn-spring plot: error: res.parquet "
                                                           "has no successful run")
    assert (tmp_path / "res.parquet").exists() and not list(tmp_path.glob("figs/*"))


@pytest.mark.slow
def test_sigterm_saves_the_running_group_and_says_so(tmp_path):
    """The group checkpoints every epoch here, so the test knows when it is training."""
    out = tmp_path / "res"
    code = ("import sys, dnn_spring.sweep._task as chunk; chunk.CHECKPOINT_EVERY = 0.0; "
            "from dnn_spring.cli import main; sys.exit(main())")
    proc = subprocess.Popen([sys.executable, "-c", code, "sweep", "ns_nl", "--preset", "quick",
                             "--seeds", "2", "--set", "noise=0", "--set", "slope=1", "--epochs",
                             "100000", "--workers", "1", "--threads", "1", "--no-progress",
                             "--out", str(out)], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not list((out / ".checkpoints").glob("*.pt")):
        assert time.time() < deadline and proc.poll() is None, "the group never started"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    (line,) = err.strip().splitlines()
    assert line == (f"dnn-spring sweep: stopped by SIGTERM: 1 running group saved in "
                    f"{out / '.checkpoints'}; finished records are in {out}; rerun the same "
                    "command to go on")
    (saved,) = (out / ".checkpoints").glob("*.pt")
    assert torch.load(saved, weights_only=False)["epoch"] >= 1


# --------------------------------------------------------------------- item 8: messages


MESSAGES = [
    (["train", "--seed", "-1"], "dnn-spring train: error: `--seed` must be >= 0, got -1"),
    (["sweep", "ns_nl", "--base-seed", "-5", "--dry-run"],
     "dnn-spring sweep: error: `--base-seed` must be >= 0, got -5"),
    (["sweep", "ns_nl", "--seeds", "0", "--dry-run"],
     "dnn-spring sweep: error: `--seeds` must be >= 1, got 0"),
    (["train", "--n-train", "100000000", "--dataset", "digits"],
     "dnn-spring train: error: `--n-train` must be <= 1437 for digits (its training samples), "
     "got 100000000"),
    (["sweep", "ns_nl", "--preset", "quick", "--set", "n_train=5000", "--dataset", "digits",
      "--dry-run"], "`--n-train` must be <= 1437 for digits"),
    (["sweep", "ns_nl", "--set", "epochs=3", "--epochs", "5", "--dry-run"],
     "dnn-spring sweep: error: `--epochs 5` and `--set epochs=...` both set `epochs`; give one "
     "of them"),
    (["sweep", "ns_nl", "--set", "dataset=digits", "--dataset", "mnist", "--dry-run"],
     "`--dataset mnist` and `--set dataset=...` both set `dataset`"),
    (["train", "--out", ""], "dnn-spring train: error: argument --out: must be a file name, got ''"),
    (["train", "--save-model", ""], "argument --save-model: must be a file name, got ''"),
    (["sweep", "ns_nl", "--out", "", "--dry-run"], "argument --out: must be a file name, got ''"),
    (["collect", "res", "--out", ""], "argument --out: must be a file name, got ''"),
    (["plot", "curvature", "res", "--out", ""], "argument --out: must be a file name, got ''"),
    (["report", "res", "--csv", ""], "argument --csv: must be a file name, got ''"),
    (["plot", "curvature", "res", "--out", "pnoext"],
     "dnn-spring plot: error: `--out` must end in one of "),
    (["report", "res", "--out", "pnoext"], "dnn-spring report: error: `--out` must end in one of "),
    (["collect", "res", "--out", "t.txt"],
     "dnn-spring collect: error: `--out` must end in one of .parquet, .csv, got 't.txt'"),
]


@pytest.mark.parametrize("argv,message", MESSAGES, ids=[" ".join(a[:4]) for a, _ in MESSAGES])
def test_bad_input_is_one_line_naming_the_flag_with_exit_2(argv, message, tmp_path, monkeypatch,
                                                           capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "res").mkdir()
    status, err = _one_line([*argv, "--no-progress"] if argv[0] == "train" else argv, capsys)
    assert status == 2 and message in err, err


def test_plot_curvature_of_a_text_column(results, tmp_path, capsys):
    status, err = _one_line(["plot", "curvature", str(results), "--value", "regime",
                             "--out", str(tmp_path / "c.png")], capsys)
    assert status == 2 and "`value` must be a numeric column such as " in err
    assert "got 'regime'" in err


def test_report_warns_when_it_pools_different_epochs(tmp_path, caplog):
    for epochs, name in ((1, "a"), (2, "b")):
        for config in tiny_grid():
            write_record(fake_record(config.replace(epochs=epochs)), tmp_path / name)
    with caplog.at_level("WARNING", logger="dnn_spring.analysis._phase_plots"):
        assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--boot", "20"]) == 0
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == "panel 'all' mixes runs with different ['epochs']; its ρ pools them"


def test_make_demo_writes_its_figure_into_a_git_ignored_folder():
    """`make demo` must leave the repository clean: its figure goes where git ignores it."""
    import re
    import subprocess

    root = Path(__file__).resolve().parents[2]
    recipe = (root / "Makefile").read_text().split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    figdir = re.search(r"FIGDIR=(\S+)", recipe)
    assert figdir, "the demo target sets no FIGDIR: it would rewrite the committed figs/"
    figure = f"{figdir.group(1)}/pd_ns_nl_quick.png"
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", figure], cwd=root,
                             capture_output=True)
    ignored = subprocess.run(["git", "check-ignore", "-q", figure], cwd=root)
    assert tracked.returncode != 0 and ignored.returncode == 0, figure
