"""Sweep grids, the resumable runner, records and collect (dnn_spring.sweep._grids/sweep/records)."""

import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dnn_spring.cli import main as cli_main
from dnn_spring.train._config import RunConfig
from dnn_spring.sweep._grids import SWEEPS, expand_grid, parse_value, sweep_seeds
from dnn_spring.sweep._store import collect, load_table, read_record, save_table, write_record
from dnn_spring.train._grouping import group_key, max_group_size
from dnn_spring.sweep._runner import SlurmOptions, pending_configs, plan_tasks, run_task, run_sweep

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- fakes
def fake_record(config, status="ok"):
    """A record shaped like train_run's, with a curve that depends on slope and noise."""
    depth = config.model.depth
    bend = config.train.noise - 0.3 + config.model.slope * 0.2
    ell = np.arange(depth + 1, dtype=float)
    log_d = (2.0 - ell / depth * 3.0 + bend * np.sin(np.pi * ell / depth)).tolist()
    return {**config.flat(), "key": config.key(), "status": status, "error": None,
            "test_acc": 0.9 - config.train.noise / 2, "log_d": log_d,
            "layers": [f"l{i}" for i in range(depth + 1)], "c": bend, "trajectory": []}


def fake_train(config, *, device="cpu", progress=False):
    if config.train.noise == 0.3:
        raise RuntimeError("boom at noise 0.3")
    return fake_record(config)


def fake_ok(config, *, device="cpu", progress=False):
    return fake_record(config)


def fake_group(configs, *, device="cpu", progress=False, **checkpointing):
    return [fake_record(c) for c in configs]


def failing_group(configs, *, device="cpu", progress=False, **checkpointing):
    raise MemoryError("group too large")


def unit(train_fn=fake_ok, group_fn=fake_group):
    """The sweep's unit of work with fake trainers (picklable for the pool)."""
    return functools.partial(run_task, train_fn=train_fn, group_fn=group_fn)


def tiny_grid(n_seeds=1):
    return expand_grid("ns_nl", "quick", {"depth": 3, "width": 8, "epochs": 1, "noise": [0, 0.3, 0.6],
                                          "slope": [0.0, 0.5, 1.0]}, n_seeds=n_seeds)


# ---------------------------------------------------------------- grids
@pytest.mark.parametrize("name, axis, values, n", [
    ("ns_nl", "noise", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], 540),
    ("lr_nl", "lr", [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5], 720),
    ("dp_nl", "dropout", [round(0.02 * i, 2) for i in range(16)], 960),
    ("bm_nl", "batch_size", [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560], 600),
])
def test_paper_grids_match_spec(name, axis, values, n):
    configs = expand_grid(name)
    assert len(configs) == n == len({c.key() for c in configs})
    flat = pd.DataFrame([c.flat() for c in configs])
    assert sorted(flat[axis].unique()) == values
    assert sorted(flat["slope"].unique()) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert flat["seed"].nunique() == 10
    assert (flat["dataset"] == "mnist").all() and (flat["width"] == 100).all()
    assert (flat["depth"] == 8).all() and (flat["optimizer"] == "adam").all()
    assert (flat["epochs"] == (200 if name == "lr_nl" else 100)).all()
    if name != "lr_nl":
        assert (flat["lr"] == 1e-3).all()
    if name != "bm_nl":
        assert (flat["batch_size"] == 0).all()  # full batch


def test_mlp_panels_total_and_cnn_grid():
    assert sum(len(expand_grid(s)) for s in ("ns_nl", "lr_nl", "dp_nl", "bm_nl")) == 2820
    cnn = pd.DataFrame([c.flat() for c in expand_grid("cnn")])
    assert len(cnn) == 80
    assert sorted(cnn["dropout"].unique()) == [0.0, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64]
    assert (cnn["slope"] == 0).all() and (cnn["arch"] == "cnn").all()
    assert (cnn["dataset"] == "cifar10").all() and (cnn["channels"] == 20).all()
    assert (cnn["lr"] == 1e-4).all() and (cnn["epochs"] == 2000).all()


def test_quick_preset_is_small_and_offline():
    for name in SWEEPS:
        configs = expand_grid(name, "quick")
        assert len(configs) <= 32
        assert all(c.data.dataset == "mnist5k" for c in configs)


def test_seeds_come_from_seed_sequence_and_are_shared_by_cells():
    seeds = [int(s.generate_state(1, dtype=np.uint32)[0])
             for s in np.random.SeedSequence(7).spawn(3)]
    assert sweep_seeds(3, 7) == seeds
    assert sweep_seeds(5, 7)[:3] == seeds  # more seeds keep the first ones
    configs = expand_grid("ns_nl", "quick", n_seeds=3, base_seed=7)
    assert {c.seed for c in configs} == set(seeds)
    first_cell = [c.seed for c in configs[:3]]
    assert first_cell == seeds


def test_overrides_and_axis_values():
    configs = expand_grid("ns_nl", "paper", {"dataset": "fashionmnist", "epochs": 3,
                                              "noise": [0.0, 0.5], "slope": [1.0]}, n_seeds=2)
    assert len(configs) == 4
    assert {c.data.dataset for c in configs} == {"fashionmnist"}
    assert {c.train.epochs for c in configs} == {3}
    assert {c.train.noise for c in configs} == {0.0, 0.5}
    with pytest.raises(ValueError, match="unknown config keys"):
        expand_grid("ns_nl", overrides={"bogus": 1})
    with pytest.raises(ValueError, match="only the axis 'noise' and 'slope'"):
        expand_grid("ns_nl", overrides={"lr": [1e-3, 1e-2]})
    with pytest.raises(ValueError, match="`sweep` must be one of"):
        expand_grid("nope")
    with pytest.raises(ValueError, match="`preset` must be one of"):
        expand_grid("ns_nl", "fast")


def test_parse_value_types():
    assert parse_value("epochs", "5") == 5
    assert parse_value("noise", "0,0.5") == [0.0, 0.5]
    assert parse_value("batchnorm", "false") is False
    assert parse_value("dataset", "mnist") == "mnist"
    with pytest.raises(ValueError, match="`epochs` must be of type int, got 'x'"):
        parse_value("epochs", "x")
    with pytest.raises(ValueError, match="unknown config field"):
        parse_value("bogus", "1")


# ---------------------------------------------------------------- records
def test_record_roundtrip_is_atomic(tmp_path):
    config = tiny_grid()[0]
    record = {**fake_record(config), "v": np.float32(0.5), "arr": np.arange(2)}
    path = write_record(record, tmp_path)
    assert path.name == f"{config.key()}.json"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left
    back = read_record(path)
    assert back["v"] == 0.5 and back["arr"] == [0, 1]


def test_corrupt_record_is_reported_skipped_and_rerun(tmp_path, caplog):
    configs = tiny_grid()[:3]
    run_sweep(configs, tmp_path, executor="debug", batch=False, progress=False,
              chunk_fn=unit(fake_ok))
    truncated = tmp_path / f"{configs[0].key()}.json"
    truncated.write_text(truncated.read_text()[:40])
    wrong_key = tmp_path / f"{configs[1].key()}.json"
    wrong_key.write_text(json.dumps({**fake_record(configs[2]), "status": "ok"}))
    with caplog.at_level("WARNING"):
        table = collect(tmp_path)
    assert len(table) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"skipping corrupt record {truncated}") for m in messages)
    assert any(str(wrong_key) in m for m in messages)
    assert [c.key() for c in pending_configs(configs, tmp_path)] == [c.key() for c in configs[:2]]
    summary = run_sweep(configs, tmp_path, executor="debug", batch=False, progress=False,
                        chunk_fn=unit(fake_ok))
    assert summary["skipped"] == 1 and summary["ran"] == 2
    assert len(collect(tmp_path)) == 3


def test_collect_tables_keep_lists(tmp_path):
    configs = tiny_grid()[:2]
    run_sweep(configs, tmp_path / "res", executor="debug", batch=False, progress=False,
              chunk_fn=unit(fake_ok))
    table = collect(tmp_path / "res")
    assert len(table) == 2 and {"key", "status", "slope", "noise", "log_d"} <= set(table.columns)
    for suffix in (".parquet", ".csv"):
        back = load_table(save_table(table, tmp_path / f"t{suffix}"))
        assert len(back) == 2
        np.testing.assert_allclose(np.asarray(back["log_d"].iloc[0], dtype=float),
                                   table["log_d"].iloc[0])
    assert json.loads(pd.read_csv(tmp_path / "t.csv")["log_d"].iloc[0]) == table["log_d"].iloc[0]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect(tmp_path / "missing")


# ---------------------------------------------------------------- runner
def test_runner_records_failures_and_skips_finished(tmp_path):
    configs = tiny_grid()
    summary = run_sweep(configs, tmp_path, executor="debug", batch=False, progress=False,
                        chunk_fn=unit(fake_train))
    assert summary["ran"] == 9 and summary["failed"] == 3 and summary["ok"] == 6
    table = collect(tmp_path)
    failed = table[table["status"] == "failed"]
    assert (failed["noise"] == 0.3).all()
    assert failed["error"].str.contains("RuntimeError: boom at noise 0.3").all()
    again = run_sweep(configs, tmp_path, executor="debug", batch=False, progress=False,
                      chunk_fn=unit(fake_train))
    assert again["skipped"] == 6 and again["ran"] == 3  # failed runs are retried
    kept = run_sweep(configs, tmp_path, executor="debug", batch=False, progress=False,
                     chunk_fn=unit(fake_train), retry_failed=False)
    assert kept["ran"] == 0 and kept["skipped"] == 9


def test_plan_chunks_respects_group_key_and_size():
    # two groups: 3 slopes × 3 noise × 2 seeds at width 8, and 9 configs at width 16
    configs = tiny_grid(n_seeds=2) + [c.replace(width=16) for c in tiny_grid()]
    chunks = plan_tasks(configs, max_size=2, workers=1)
    assert sorted(c.key() for chunk in chunks for c in chunk) == sorted(c.key() for c in configs)
    assert all(len(c) <= 2 and len({group_key(x) for x in c}) == 1 for c in chunks)
    big = plan_tasks(configs, max_size=100, workers=4)
    assert len(big) >= 4
    for width in (8, 16):  # chunks of one group differ in size by one at most
        sizes = [len(c) for c in big if c[0].model.width == width]
        assert max(sizes) - min(sizes) <= 1
    assert len(plan_tasks(configs, batch=False)) == 27
    real = plan_tasks(configs, workers=1)  # capped by the real group size on this device
    assert all(len(c) <= max_group_size(c[0]) for c in real) and len(real) >= 2


@pytest.mark.usefixtures("one_thread")
def test_a_run_trained_alone_in_a_sweep_gives_its_group_record(tmp_path):
    """One by one (and a chunk of one) a sweep trains a group of one, never the lone fast
    path: its records are bit for bit those of the same configs in a batched group."""
    from dnn_spring.train._group import train_group

    configs = [RunConfig().replace(depth=3, width=8, epochs=2, batch_size=32, seed=s, slope=0.2)
               for s in (1, 2)]
    run_task(configs, tmp_path / "alone", batch=False)
    run_task(configs[:1], tmp_path / "chunk", batch=True)
    grouped = train_group(configs)
    drop = lambda r: {k: v for k, v in r.items() if k != "wall_time"}  # noqa: E731
    for folder, n in (("alone", 2), ("chunk", 1)):
        for config, member in zip(configs[:n], grouped):
            record = read_record(tmp_path / folder / f"{config.key()}.json")
            assert drop(record) == drop(json.loads(json.dumps(member))), folder


def test_failed_group_is_retried_one_by_one(tmp_path, monkeypatch):
    configs = tiny_grid()[:4]
    statuses = run_task(configs, tmp_path, batch=True, group_fn=failing_group,
                         train_fn=fake_train)
    assert [s for _, s in statuses] == ["ok", "failed", "ok", "ok"]  # noise 0.3 fails alone
    sizes = []
    monkeypatch.setattr("dnn_spring.sweep._task.max_group_size", lambda c, device: 3)
    statuses = run_task(configs, tmp_path / "b", batch=True, train_fn=fake_train,  # too big
                         group_fn=lambda cs, **kw: sizes.append(len(cs)) or fake_group(cs))
    assert [s for _, s in statuses] == ["ok"] * 4 and sizes == [3]  # the last one runs alone


@pytest.mark.slow
def test_process_pool_and_submitit_executors(tmp_path):
    configs = tiny_grid()
    summary = run_sweep(configs, tmp_path / "pool", executor="local", workers=2, batch=True,
                        progress=False, chunk_fn=unit(fake_train, fake_group))
    assert summary["ran"] == 9 and summary["ok"] == 9 and summary["lost"] == 0
    assert len(list((tmp_path / "pool").glob("*.json"))) == 9
    summary = run_sweep(configs[:3], tmp_path / "sub", executor="slurm", batch=False,
                        progress=False, chunk_fn=unit(fake_ok), slurm=SlurmOptions(cluster="debug"))
    assert summary["ok"] == 3
    with pytest.raises(ValueError, match="`executor` must be one of"):
        run_sweep(configs, tmp_path, executor="cloud")


_KILL_SCRIPT = """
import os, sys, time
from functools import partial
from dnn_spring.sweep._grids import expand_grid
from dnn_spring.sweep._runner import run_task, run_sweep

LOG = sys.argv[1]
GRID = {"depth": 3, "noise": [0.0, 0.3, 0.6], "slope": [0.0, 0.5, 1.0]}

def slow_train(config, *, device="cpu", progress=False):
    with open(LOG, "a") as log:
        log.write(f"{sys.argv[3]} {config.key()} {os.getpid()}\\n")
    time.sleep(0.2)
    return {**config.flat(), "key": config.key(), "status": "ok", "log_d": [1.0, 0.5, 0.0]}

if __name__ == "__main__":
    configs = expand_grid("ns_nl", "quick", GRID, n_seeds=2)
    run_sweep(configs, sys.argv[2], executor=sys.argv[4], workers=int(sys.argv[5]),
              batch=False, progress=False, chunk_fn=partial(run_task, train_fn=slow_train))
"""


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("executor, workers", [("debug", 1), ("local", 2)])
@pytest.mark.slow
def test_sigkill_then_rerun_finishes_each_point_once(tmp_path, executor, workers):
    script, log, out = tmp_path / "kill_me.py", tmp_path / "calls.log", tmp_path / "out"
    script.write_text(textwrap.dedent(_KILL_SCRIPT))
    command = [sys.executable, str(script), str(log), str(out)]
    proc = subprocess.Popen(command + ["first", executor, str(workers)], cwd=ROOT)
    deadline = time.time() + 60
    while len(list(out.glob("*.json"))) < 3:
        assert time.time() < deadline and proc.poll() is None, "sweep did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the process running the sweep, nothing else
    proc.wait()
    pids = {int(line.split()[2]) for line in log.read_text().splitlines()}
    deadline = time.time() + 10
    while any(_alive(p) for p in pids):  # workers die with their parent
        assert time.time() < deadline, "workers outlived the killed sweep"
        time.sleep(0.05)
    before = {p.stem for p in out.glob("*.json")}
    assert 3 <= len(before) < 18
    subprocess.run(command + ["second", "debug", "1"], cwd=ROOT, check=True, timeout=60)
    grid = {c.key() for c in expand_grid("ns_nl", "quick", {"depth": 3, "noise": [0.0, 0.3, 0.6],
                                                             "slope": [0.0, 0.5, 1.0]}, n_seeds=2)}
    assert {p.stem for p in out.glob("*.json")} == grid and len(grid) == 18
    calls = [line.split() for line in log.read_text().splitlines()]
    second = [key for tag, key, _ in calls if tag == "second"]
    assert len(second) == len(set(second)) == 18 - len(before)
    assert not set(second) & before  # finished points are not recomputed


# ---------------------------------------------------------------- CLI
def test_cli_dry_run_and_collect(tmp_path, capsys):
    out = tmp_path / "res"
    assert cli_main(["sweep", "ns_nl", "--preset", "quick", "--out", str(out), "--dry-run",
                     "--seeds", "2", "--epochs", "7", "--set", "width=16",
                     "--set", "noise=0,0.8"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 * 4 * 2  # noise values × quick slopes × seeds
    assert {x["epochs"] for x in lines} == {7} and {x["width"] for x in lines} == {16}
    assert {x["noise"] for x in lines} == {0.0, 0.8} and not any(x["done"] for x in lines)
    assert not out.exists() or not list(out.glob("*.json"))
    configs = [RunConfig.from_flat({k: v for k, v in x.items() if k not in ("key", "done")})
               for x in lines]
    run_sweep(configs[:2], out, executor="debug", batch=False, progress=False,
              chunk_fn=unit(fake_train))
    assert cli_main(["collect", str(out), "--out", str(tmp_path / "t.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "t.csv")) == 2
    assert cli_main(["sweep", "ns_nl", "--dry-run", "--set", "bogus"]) == 2
    assert "`--set` must be KEY=VALUE" in capsys.readouterr().err


def test_real_training_on_a_tiny_grid(tmp_path):
    configs = expand_grid("ns_nl", "quick", {"depth": 3, "width": 16, "epochs": 2,
                                              "noise": [0.0, 0.6], "slope": [0.0, 1.0]},
                          n_seeds=1)
    summary = run_sweep(configs, tmp_path, executor="debug", progress=False)
    assert summary["ok"] == 4
    table = collect(tmp_path)
    assert table["log_d"].map(len).eq(4).all()  # input, 2 hidden, logits
    assert table["test_acc"].between(0, 1).all()
    single = run_sweep(configs[:1], tmp_path / "one", executor="debug", batch=False,
                       progress=False)
    assert single["ok"] == 1


def test_rerun_goes_on_from_a_killed_groups_checkpoint(tmp_path, monkeypatch):
    from dnn_spring.train import _group as batched
    from dnn_spring.sweep._runner import checkpoint_path

    configs = expand_grid("ns_nl", "quick", {"depth": 3, "width": 16, "epochs": 4,
                                              "noise": [0.2], "slope": [0.0, 1.0]}, n_seeds=1)
    reference = {r["key"]: r for r in batched.train_group(configs)}
    # the state a kill after two epochs leaves behind (a SIGKILL would leave the same file)
    original, epochs = batched.GroupLoop.run_epoch, {"run": 0, "kill_after": 2}

    def epoch(self):
        if epochs["run"] == epochs["kill_after"]:
            raise KeyboardInterrupt
        epochs["run"] += 1
        return original(self)

    monkeypatch.setattr(batched.GroupLoop, "run_epoch", epoch)
    path = checkpoint_path(configs, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        batched.train_group(configs, checkpoint=path, checkpoint_every=0)
    assert path.exists() and not list(tmp_path.glob("*.json"))
    epochs.update(run=0, kill_after=None)
    summary = run_sweep(configs, tmp_path, executor="debug", progress=False)
    assert epochs["run"] == 2  # only epochs 3 and 4 were trained again
    assert summary["ok"] == 2 and not path.exists()  # the checkpoint goes with its records
    for key, rec in collect(tmp_path).set_index("key").iterrows():
        assert rec["test_acc"] == reference[key]["test_acc"]
        assert list(rec["log_d"]) == reference[key]["log_d"]


# ---------------------------------------------------------------- bad records, write errors
def test_bad_record_is_named_moved_aside_and_rerun(tmp_path, caplog):
    configs = tiny_grid()[:3]
    run_sweep(configs, tmp_path, executor="debug", batch=False, progress=False, chunk_fn=unit(fake_ok))
    bad = tmp_path / f"{configs[0].key()}.json"
    bad.write_text(json.dumps({**fake_record(configs[0]), "test_acc": "high"}))
    assert pending_configs(configs, tmp_path) == configs[:1]  # as --dry-run: nothing moved
    assert bad.exists() and not (tmp_path / ".bad").exists()
    caplog.clear()
    calls = []
    with caplog.at_level("WARNING", logger="dnn_spring"):
        summary = run_sweep(configs, tmp_path, executor="debug", batch=False, progress=False,
                            chunk_fn=unit(lambda c, **kw: calls.append(c.key()) or fake_ok(c)))
    assert calls == [configs[0].key()] and summary["skipped"] == 2 and summary["ok"] == 1
    moved = tmp_path / ".bad" / bad.name
    assert json.loads(moved.read_text())["test_acc"] == "high"
    assert read_record(bad)["test_acc"] == fake_record(configs[0])["test_acc"]
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert lines == [f"corrupt record {bad} (`test_acc` must be a number or null, got 'high'); "
                     f"moved to {moved}, its run will be redone"]


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A 64 KiB tmpfs at tmp_path/full (a real ENOSPC), and $TMPDIR at tmp_path/tmp."""
    import tempfile

    where, fallback = tmp_path / "full", tmp_path / "tmp"
    where.mkdir()
    fallback.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                           capture_output=True, text=True)
    if mount.returncode != 0 and os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    assert mount.returncode == 0, mount.stderr
    monkeypatch.setattr(tempfile, "tempdir", str(fallback))
    try:
        yield where, fallback
    finally:
        subprocess.run(["umount", str(where)], check=True)


def big_record(config, *args, **kwargs):
    return {**fake_record(config), "pad": "x" * 20_000}  # a few fill the 64 KiB disk


def _unsaved(fallback):
    files = list(fallback.glob("dnn-spring-unsaved-*.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def test_disk_full_keeps_the_result_and_stops_the_sweep(full_disk):
    from dnn_spring.sweep._runner import RecordWriteError

    out, fallback = full_disk
    configs = tiny_grid()
    calls = []
    with pytest.raises(RecordWriteError) as info:
        run_sweep(configs, out, executor="debug", batch=False, progress=False,
                  chunk_fn=unit(lambda c, **kw: calls.append(c.key()) or big_record(c)))
    written = sorted(p.stem for p in out.glob("*.json"))
    assert 1 <= len(written) and len(calls) == len(written) + 1 < len(configs)  # stopped at once
    assert not list(out.glob(".*.tmp"))
    lost = calls[-1]
    assert str(info.value) == (f"could not write record {out / (lost + '.json')}: [Errno 28] No "
                               f"space left on device; its result was appended to "
                               f"{fallback / f'dnn-spring-unsaved-{os.getpid()}.jsonl'}")
    assert [r["key"] for r in _unsaved(fallback)] == [lost]
    assert _unsaved(fallback)[0]["pad"] == "x" * 20_000


def test_disk_full_in_a_batched_group_writes_the_records_that_fit(full_disk, monkeypatch):
    from dnn_spring.sweep._runner import RecordWriteError

    out, fallback = full_disk
    configs = tiny_grid()[:6]
    with pytest.raises(RecordWriteError) as info:
        monkeypatch.setattr("dnn_spring.sweep._task.max_group_size", lambda c, device: 6)
        run_task(configs, out, batch=True, group_fn=lambda cs, **kw: [big_record(c) for c in cs])
    written = {p.stem for p in out.glob("*.json")}
    unsaved = {r["key"] for r in _unsaved(fallback)}
    assert written and unsaved and written | unsaved == {c.key() for c in configs}
    assert not written & unsaved
    assert len(info.value.failures) == len(unsaved) and len(info.value.pairs) == len(written)
    assert all(line.startswith("could not write record ") and "[Errno 28]" in line
               for line in info.value.failures)


def test_cli_sweep_on_a_full_disk_is_one_line_and_exit_1(full_disk, monkeypatch, capsys):
    out, fallback = full_disk
    monkeypatch.setattr("dnn_spring.sweep._task.train_run", big_record)
    status = cli_main(["sweep", "ns_nl", "--preset", "quick", "--out", str(out), "--no-batch",
                       "--executor", "debug", "--no-progress", "--seeds", "1"])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and lines[0].startswith("dnn-spring sweep: error: could not write record")
    assert lines[0].endswith(f"its result was appended to {fallback}/dnn-spring-unsaved-{os.getpid()}.jsonl")
    assert len(_unsaved(fallback)) == 1


def test_collect_table_on_a_full_disk_keeps_the_old_table(full_disk, tmp_path, capsys):
    out, _ = full_disk
    results = tmp_path / "res"
    run_sweep(tiny_grid(), results, executor="debug", batch=False, progress=False, chunk_fn=unit(fake_ok))
    table = out / "t.csv"
    save_table(collect(results).iloc[:1], table)
    before = table.read_bytes()
    with open(out / "filler", "wb", buffering=0) as filler, pytest.raises(OSError):
        while True:  # fill the disk to the last byte
            filler.write(b"x" * 512)
    assert cli_main(["collect", str(results), "--out", str(table)]) == 1  # the table is kept
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "Traceback" not in err
    assert table.read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["filler", "t.csv"]
    kept = full_disk[1] / f"dnn-spring-unsaved-{os.getpid()}-t.csv"
    assert err.strip().endswith(f"it was written to {kept} instead")
    assert len(load_table(kept)) == len(tiny_grid())


def test_record_write_error_survives_pickling():
    import pickle

    from dnn_spring.sweep._runner import RecordWriteError

    exc = pickle.loads(pickle.dumps(RecordWriteError(["line one", "line two"], [("k", "ok")])))
    assert exc.failures == ["line one", "line two"] and exc.pairs == [("k", "ok")]
    assert str(exc) == "line one\nline two" and isinstance(exc, OSError)


# ---------------------------------------------------------------- stale checkpoints, CLI checks
def test_stale_checkpoints_are_removed_at_the_start(tmp_path, caplog):
    from dnn_spring.sweep._runner import checkpoint_path, planned_checkpoints

    configs = tiny_grid()
    folder = tmp_path / ".checkpoints"
    folder.mkdir()
    stale = folder / "0123456789abcdef0123.pt"
    stale.write_bytes(b"old grid")
    other = folder / "notes.txt"
    other.write_text("not a checkpoint")
    chunks = plan_tasks(configs)
    planned = checkpoint_path(chunks[0], tmp_path)
    planned.write_bytes(b"state of a killed group")
    seen = []

    def group(cs, **kw):
        seen.append((stale.exists(), planned.exists()))
        return fake_group(cs)

    with caplog.at_level("INFO", logger="dnn_spring.sweep._runner"):
        run_sweep(configs, tmp_path, executor="debug", progress=False,
                  chunk_fn=unit(fake_ok, group))
    assert seen[0] == (False, True) and other.exists()
    assert [r.getMessage() for r in caplog.records] == [
        f"removed 1 stale checkpoint from {folder} (their groups are not in this sweep)"]
    # Slurm jobs size their groups on their own device: every split of a chunk is planned.
    four = configs[:4]
    names = planned_checkpoints([four], tmp_path, "cpu", sized_here=False)
    assert {checkpoint_path(g, tmp_path).name for g in (four, four[:2], four[2:], four[:3])} <= names


def test_cli_workers_must_be_positive(tmp_path, capsys):
    assert cli_main(["sweep", "ns_nl", "--preset", "quick", "--out", str(tmp_path),
                     "--workers", "0"]) == 2
    assert capsys.readouterr().err == "dnn-spring sweep: error: `--workers` must be >= 1, got 0\n"
    assert not list(tmp_path.iterdir())


def test_cli_rejects_non_finite_config_values(tmp_path, capsys):
    assert cli_main(["sweep", "lr_nl", "--preset", "quick", "--out", str(tmp_path), "--dry-run",
                     "--set", "lr=1e-3,inf"]) == 2
    assert "`lr` must be a finite number, got inf" in capsys.readouterr().err


# ---------------------------------------------------------------- same records however run
_QUICK = {"epochs": 2}  # the quick ns_nl grid (4 noise × 4 slopes), 2 epochs, 2 seeds
_CLI = "import sys; from dnn_spring.cli import main; sys.exit(main())"


def _numbers(folder) -> dict:
    """``{key: (train_loss, test_acc, log_d)}`` of every record in ``folder``."""
    out = {}
    for path in Path(folder).glob("*.json"):
        record = json.loads(path.read_text())
        assert record["status"] == "ok" and record["threads"] == 1, record["key"]
        out[record["key"]] = (record["train_loss"], record["test_acc"], record["log_d"])
    return out


def _spy_groups(groups):
    from dnn_spring.train._group import train_group

    def group_fn(configs, **kwargs):
        groups.add(frozenset(c.key() for c in configs))
        return train_group(configs, **kwargs)

    return group_fn


@pytest.mark.slow
def test_quick_sweep_gives_the_same_records_however_it_is_run(tmp_path):
    """A record depends on its config (and thread count), not on the group it was trained in."""
    configs = expand_grid("ns_nl", "quick", _QUICK, n_seeds=2)
    keys = {c.key() for c in configs}
    assert len(keys) == 32
    # (a) all at once
    groups_a, groups_b = set(), set()
    run_sweep(configs, tmp_path / "a", threads=1, progress=False,
              chunk_fn=functools.partial(run_task, group_fn=_spy_groups(groups_a)))
    # (b) the noise-0.2 row first (`--set noise=0.2`), then the whole grid in the same folder
    row = expand_grid("ns_nl", "quick", {**_QUICK, "noise": 0.2}, n_seeds=2)
    assert len(row) == 8 and {c.train.noise for c in row} == {0.2}
    first = run_sweep(row, tmp_path / "b", threads=1, progress=False,
                      chunk_fn=functools.partial(run_task, group_fn=_spy_groups(groups_b)))
    second = run_sweep(configs, tmp_path / "b", threads=1, progress=False,
                       chunk_fn=functools.partial(run_task, group_fn=_spy_groups(groups_b)))
    assert first["ok"] == 8 and second["skipped"] == 8 and second["ok"] == 24
    assert groups_a != groups_b and all(len(g) > 1 for g in groups_a | groups_b)  # batched
    # (c) the CLI, SIGKILLed once some records (not all) are written, then run again
    out = tmp_path / "c"
    command = [sys.executable, "-c", _CLI, "sweep", "ns_nl", "--preset", "quick", "--epochs",
               str(_QUICK["epochs"]), "--seeds", "2", "--out", str(out), "--threads", "1",
               "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(out.glob("*.json")):
        assert time.time() < deadline and proc.poll() is None, "the sweep wrote no record"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.stem for p in out.glob("*.json")}
    assert 1 <= len(before) < 32  # killed part-way
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"ns_nl: 32 runs, {len(before)} already done; ran {32 - len(before)}: " \
           f"{32 - len(before)} ok" in rerun.stderr
    # the same numbers, bit for bit, every way
    a, b, c = _numbers(tmp_path / "a"), _numbers(tmp_path / "b"), _numbers(out)
    assert set(a) == set(b) == set(c) == keys
    assert len({loss for loss, _, _ in a.values()}) == 32  # real, distinct numbers
    for key in sorted(keys):
        assert a[key] == b[key] == c[key], key


# ---------------------------------------------------------------- threads
def test_threads_per_worker_precedence(tmp_path, monkeypatch):
    from dnn_spring.sweep._runner import threads_per_worker

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_per_worker(2, 5) == 5  # explicit first
    assert threads_per_worker(2) == 3  # then OMP_NUM_THREADS
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads_per_worker(2) == 4 and threads_per_worker(3) == 2  # then CPUs // workers
    assert threads_per_worker(16) == 1
    for bad in ("abc", "0", "-2", "1.5", ""):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        assert threads_per_worker(2) == 4, bad  # ignored
    with pytest.raises(ValueError, match=r"`threads` must be >= 1, got 0"):
        threads_per_worker(2, 0)
    with pytest.raises(ValueError, match=r"`threads` must be >= 1, got -1"):
        run_sweep(tiny_grid()[:1], tmp_path / "out", threads=-1)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("threads", [1, 2])
def test_records_store_the_thread_count_they_ran_with(tmp_path, threads):
    import torch

    before = torch.get_num_threads()
    configs = tiny_grid()[:2]  # real training, 1 epoch of a depth-3 width-8 MLP
    summary = run_sweep(configs, tmp_path, executor="debug", threads=threads, progress=False)
    assert summary["ok"] == 2
    records = [read_record(p) for p in tmp_path.glob("*.json")]
    assert len(records) == 2 and {r["threads"] for r in records} == {threads}
    assert all(r["torch_version"] == torch.__version__ and r["cpu_capability"] for r in records)
    assert torch.get_num_threads() == before  # inline runs restore it


def report_threads(config, *, device="cpu", progress=False):
    import torch

    return {**fake_record(config), "threads": torch.get_num_threads()}


@pytest.mark.slow
def test_threads_reach_the_workers_and_follow_omp_num_threads(tmp_path, monkeypatch):
    configs = tiny_grid()[:4]
    run_sweep(configs, tmp_path / "pool", workers=2, threads=3, batch=False, progress=False,
              chunk_fn=unit(report_threads))
    assert {read_record(p)["threads"] for p in (tmp_path / "pool").glob("*.json")} == {3}
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    run_sweep(configs, tmp_path / "env", executor="debug", batch=False, progress=False,
              chunk_fn=unit(report_threads))
    assert {read_record(p)["threads"] for p in (tmp_path / "env").glob("*.json")} == {2}


def test_cli_threads_must_be_positive(tmp_path, capsys):
    assert cli_main(["sweep", "ns_nl", "--preset", "quick", "--out", str(tmp_path),
                     "--threads", "0"]) == 2
    assert capsys.readouterr().err == "dnn-spring sweep: error: `--threads` must be >= 1, got 0\n"
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- diverged records are final
def test_diverged_records_are_not_rerun(tmp_path):
    configs = tiny_grid()

    def train(config, **kwargs):
        calls.append(config.key())
        return fake_record(config, "diverged" if config.train.noise == 0.6 else "ok")

    calls = []
    summary = run_sweep(configs, tmp_path, executor="debug", batch=False, progress=False,
                        chunk_fn=unit(train))
    assert summary["diverged"] == 3 and summary["ok"] == 6 and len(calls) == 9
    assert pending_configs(configs, tmp_path) == []
    calls.clear()
    again = run_sweep(configs, tmp_path, executor="debug", batch=False, progress=False,
                      chunk_fn=unit(train))
    assert calls == [] and again["skipped"] == 9 and again["ran"] == 0
    assert collect(tmp_path)["status"].value_counts().to_dict() == {"ok": 6, "diverged": 3}
