"""``dnn-spring train``: a real run, --out, --help, and one-line errors."""

import json
import subprocess
import sys

import pytest
import torch

from dnn_spring.cli import main


pytestmark = pytest.mark.usefixtures("one_thread")


SMALL = ["--depth", "4", "--width", "16", "--epochs", "2", "--no-progress"]


def test_train_prints_table_and_writes_record(tmp_path, capsys):
    out = tmp_path / "sub" / "run.json"
    assert main(["train", *SMALL, "--slope", "0.3", "--seed", "5", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for word in ("log D", "input_bn", "(logits)", "test acc", "regime", "status ok"):
        assert word in text
    record = json.loads(out.read_text())
    assert record["slope"] == 0.3 and record["seed"] == 5 and record["depth"] == 4
    assert record["status"] == "ok" and len(record["log_d"]) == 5


def test_grouped_gives_the_sweep_record_and_the_default_is_the_lone_path(tmp_path, capsys):
    from dnn_spring.train import RunConfig, train_group

    config = RunConfig().replace(depth=4, width=16, epochs=2, slope=0.3, seed=5)
    records = {}
    for flag in ([], ["--grouped"]):
        out = tmp_path / f"run{len(flag)}.json"
        assert main(["train", *SMALL, "--slope", "0.3", "--seed", "5", *flag, "--out", str(out)]) == 0
        records[bool(flag)] = json.loads(out.read_text())
    capsys.readouterr()
    member = json.loads(json.dumps(train_group([config, config.replace(seed=6)])[0]))
    same = lambda a, b: {k: v for k, v in a.items() if k != "wall_time"} == \
        {k: v for k, v in b.items() if k != "wall_time"}  # noqa: E731
    assert same(records[True], member)  # bit for bit: a sweep's record of this config
    assert not same(records[False], member)  # the lone path rounds its own way
    assert records[False]["status"] == "ok" and records[False]["key"] == member["key"]


def test_every_config_field_has_a_flag(capsys):
    from dnn_spring.train._config import flat_field_names

    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for field in flat_field_names():
        flag = {"batchnorm": "--no-batchnorm"}.get(field, "--" + field.replace("_", "-"))
        assert flag in text, flag
    assert "--device" in text and "--out" in text


BAD = [
    (["--slope", "1.5"], "`slope` must be in"),
    (["--noise", "-0.1"], "`noise` must be in [0.0, 1.0], got -0.1"),
    (["--dropout", "1"], "`dropout` must be < 1"),
    (["--lr", "0"], "`lr` must be > 0.0, got 0.0"),
    (["--batch-size", "-2"], "`batch_size` must be >= 0, got -2"),
    (["--epochs", "0"], "`epochs` must be >= 1, got 0"),
    (["--optimizer", "lbfgs"], "`optimizer` must be one of"),
    (["--dataset", "imagenet"], "`dataset` must be one of"),
    (["--arch", "rnn"], "`arch` must be one of"),
    (["--init", "xavier"], "`init` must be one of"),
    (["--depth", "1"], "`depth` must be >= 2, got 1"),
    (["--width", "0"], "`width` must be >= 1, got 0"),
    (["--init-scale", "0"], "`init_scale` must be > 0.0, got 0.0"),
    (["--temperature", "-1"], "`temperature` must be >= 0.0, got -1.0"),
    (["--curve-every", "-1"], "`curve_every` must be >= 0, got -1"),
    (["--lr", "inf"], "`lr` must be a finite number, got inf"),
    (["--noise", "nan"], "`noise` must be a finite number, got nan"),
    (["--temperature=-inf"], "`temperature` must be a finite number, got -inf"),
    (["--n-train", "-5"], "`n_train` must be >= 0, got -5"),
    (["--channels", "0"], "`channels` must be >= 1, got 0"),
    (["--data-seed", "-1"], "`data_seed` must be >= 0, got -1"),
    (["--device", "tpu"], "`device` must be"),
    (["--threads", "0"], "`--threads` must be >= 1, got 0"),
    (["--epochs", "ten"], "invalid int value"),
    (["--lr", "fast"], "invalid float value"),
    (["--seed", "1.5"], "invalid int value"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[a[0] for a, _ in BAD])
def test_bad_flag_value_is_one_line_and_exit_2(argv, message, capsys):
    try:
        status = main(["train", *argv, "--no-progress"])
    except SystemExit as exc:  # argparse type errors
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("dnn-spring train: error: "), err
    assert message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_unavailable_is_one_line(capsys):
    assert main(["train", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.slow
def test_console_script_exit_status():
    proc = subprocess.run([sys.executable, "-c", "import sys; from dnn_spring.cli import main; sys.exit(main())",
                           "train", "--slope", "7"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "`slope`" in proc.stderr


def test_every_invalid_field_is_named_at_once(capsys):
    assert main(["train", "--slope", "2", "--lr", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "`slope`" in err[0] and "`lr`" in err[0]


def test_unknown_flag_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--bogus"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--bogus" in err[0]


def test_switch_flags_show_no_default_value(capsys):
    import re

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help lines
    assert "(default: True)" not in text and "(default: False)" not in text
    assert re.search(r"--no-batchnorm drop every BatchNorm layer \(default: BatchNorm on\)", text)
    assert "--zero-bias start every bias at zero (default: off)" in text
    assert "learning rate (> 0) (default: 0.001)" in text  # value flags keep theirs


@pytest.mark.slow
def test_closed_stdout_pipe_ends_quietly():
    """`dnn-spring spring simulate --json | head`: the reader is gone before the JSON comes."""
    code = "import sys; from dnn_spring.cli import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code, "spring", "simulate", "--json", "--out", "",
                             "--t-max", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `head` that has read enough
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert err == "", err


_CLI = "import sys; from dnn_spring.cli import main; sys.exit(main())"


@pytest.mark.slow
def test_diverged_run_exits_0_with_one_stderr_line(tmp_path):
    out = tmp_path / "run.json"
    proc = subprocess.run([sys.executable, "-c", _CLI, "train", "--optimizer", "sgd", "--lr", "50",
                           "--epochs", "20", "--depth", "4", "--width", "32", "--threads", "1",
                           "--no-progress", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "diverged" in lines[0] and "Traceback" not in proc.stderr, lines
    assert lines[0].startswith("dnn-spring train: the run diverged after ")
    assert "status diverged" in proc.stdout and "(stop: diverged)" in proc.stdout
    record = json.loads(out.read_text())
    assert record["status"] == "diverged" and record["threads"] == 1
    assert f"after {record['epochs_run']} epochs" in lines[0] and record["epochs_run"] < 20


def test_threads_flag_is_used_and_recorded(tmp_path, capsys):
    out = tmp_path / "run.json"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", *SMALL, "--threads", "2", "--out", str(out)]) == 0
        assert torch.get_num_threads() == 1  # the caller's count is restored afterwards
    finally:
        torch.set_num_threads(before)
    record = json.loads(out.read_text())
    assert record["threads"] == 2 and record["torch_version"] == torch.__version__
    assert capsys.readouterr().err == ""
