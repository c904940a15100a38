"""The report's inputs from training: clean train acc and loss (in records and trajectory
entries), kept weights and WeightWatcher, and the early forecast, each against an
independent reference (scipy, a float64 evaluation of the kept model, WeightWatcher itself)."""

import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import spearmanr

from dnn_spring.analysis._forecast import forecast, trajectory_statistics
from dnn_spring.cli import main as cli_main
from dnn_spring.sweep._store import collect, load_table, save_table
from dnn_spring.train._config import RunConfig
from dnn_spring.train._data import load_dataset
from dnn_spring.train._fixed_order import exact_loss
from dnn_spring.train._record import check_record
from dnn_spring.train._run import train_run
from dnn_spring.train._saved import from_saved

CLI = Path(sys.executable).with_name("dnn-spring")


def _reference(model, x, y) -> tuple:
    """(accuracy, mean cross-entropy) in float64 with scipy, the model in eval mode."""
    model.eval()
    with torch.no_grad():
        logits = model(x).double().numpy()
    y = y.numpy()
    loss = np.mean(logsumexp(logits, axis=1) - logits[np.arange(len(y)), y])
    return float(np.mean(logits.argmax(1) == y)), float(loss)


def test_exact_loss_is_scipys_cross_entropy():
    gen = torch.Generator().manual_seed(3)
    logits = 8 * torch.randn(500, 10, generator=gen)
    y = torch.randint(0, 10, (500,), generator=gen)
    ref = np.mean(logsumexp(logits.double().numpy(), axis=1) - logits.double().numpy()[np.arange(500), y])
    assert exact_loss(logits, y) == pytest.approx(ref, rel=1e-13)


def test_records_and_trajectory_entries_carry_the_clean_train_acc_and_loss():
    config = RunConfig().replace(dataset="digits", depth=3, width=32, epochs=4, curve_every=2,
                                 noise=0.5, stop_loss=0.0, stop_delta=0.0)
    record, model = train_run(config, return_model=True)
    assert check_record(record) == []
    assert [step["epoch"] for step in record["trajectory"]] == [0, 2, 4]
    data = load_dataset(config.data)
    acc, loss = _reference(model, data.x_train, data.y_train)
    # clean labels: a 50 % noise run fits its noisy labels, and the clean loss differs from them
    assert record["train_acc"] == acc
    assert record["clean_train_loss"] == pytest.approx(loss, rel=1e-5)
    assert abs(record["clean_train_loss"] - record["train_loss"]) > 1e-3
    last = record["trajectory"][-1]
    assert last["train_acc"] == acc and last["train_loss"] == pytest.approx(loss, rel=1e-5)
    first = record["trajectory"][0]  # before training: chance accuracy, loss near log 10
    assert first["train_acc"] < 0.3 and first["train_loss"] == pytest.approx(np.log(10), rel=0.2)
    bad = dict(record, trajectory=[{"epoch": 0, "log_d": [1.0], "train_acc": "high"}])
    assert any("train_acc" in p for p in check_record(bad))


def _sweep(out: Path, *extra) -> int:
    return cli_main(["sweep", "ns_nl", "--preset", "quick", "--dataset", "digits", "--seeds", "2",
                     "--set", "depth=3", "--set", "width=64", "--set", "epochs=4",
                     "--set", "noise=0,0.5", "--set", "slope=0,1", "--set", "stop_loss=0",
                     "--trajectory", "2", "--executor", "debug", "--no-progress", "--out", str(out),
                     *extra])


@pytest.mark.slow
def test_a_sweep_keeps_trajectories_and_weights_for_weightwatcher(tmp_path, capsys):
    import weightwatcher

    assert _sweep(tmp_path / "run", "--save-weights") == 0
    table = collect(tmp_path / "run")
    assert len(table) == 8 and (table["status"] == "ok").all()
    assert all([s["epoch"] for s in t] == [0, 2, 4] for t in table["trajectory"])
    data = load_dataset(RunConfig().replace(dataset="digits").data)
    for _, run in table.iterrows():  # the kept network is the one the record measured
        path = tmp_path / "run" / "weights" / f"{run['key']}.pt"
        model = from_saved(torch.load(path, weights_only=True), path)
        assert _reference(model, data.x_test, data.y_test)[0] == run["test_acc"]
    capsys.readouterr()
    assert cli_main(["report", str(tmp_path / "run"), "--weightwatcher", "--boot", "50",
                     "--save-tables", str(tmp_path / "tables")]) == 0
    text = capsys.readouterr().out
    assert "WW α" in text and "for 8 of 8 ok runs" in text and "10 %" in text
    saved = load_table(tmp_path / "tables" / "run.parquet")
    key = saved["key"].iloc[0]
    path = tmp_path / "run" / "weights" / f"{key}.pt"
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        watcher = weightwatcher.WeightWatcher(model=from_saved(torch.load(path, weights_only=True), path))
        summary = watcher.get_summary(watcher.analyze())
    assert saved["ww_alpha"].iloc[0] == pytest.approx(summary["alpha"], rel=1e-9)
    assert saved["ww_alpha_weighted"].iloc[0] == pytest.approx(summary["alpha_weighted"], rel=1e-9)
    cache = pd.read_csv(tmp_path / "run" / "weights" / "weightwatcher.csv")
    assert len(cache) == 8  # a second report reads them back
    assert cli_main(["report", str(tmp_path / "tables" / "run.parquet"), "--boot", "50"]) == 0
    assert "WW α" in capsys.readouterr().out  # the saved table needs no weights


@pytest.mark.slow
def test_no_weights_and_an_unwritable_weights_folder_are_said(tmp_path, caplog):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "weights").write_text("not a folder")
    with caplog.at_level(logging.WARNING):
        assert _sweep(tmp_path / "run", "--save-weights") == 0  # the records are still written
    assert len(collect(tmp_path / "run")) == 8
    assert "were not saved" in caplog.text
    assert _sweep(tmp_path / "plain") == 0
    done = subprocess.run([str(CLI), "report", str(tmp_path / "plain"), "--weightwatcher"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "did not save its weights" in done.stderr and "--save-weights" in done.stderr


def _trajectory_table(n=24, seed=1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    acc = rng.uniform(0.7, 0.95, n)
    rows = []
    for i, a in enumerate(acc):
        steps = [{"epoch": e, "log_d": list(np.linspace(3, 2 - e * a / 10 + rng.normal(0, 0.3), 5)),
                  "train_acc": float(np.clip(a * e / 10 + rng.normal(0, 0.05), 0, 1)),
                  "train_loss": float(rng.uniform(0.1, 2))} for e in (0, 2, 5, 10)]
        rows.append({"status": "failed" if i == 5 else "ok", "seed": i % 3, "epochs": 10,
                     "test_acc": a, "trajectory": steps})
    return pd.DataFrame(rows)


def test_the_forecast_is_scipys_spearman_at_the_entry_at_or_before_the_fraction():
    table = _trajectory_table()
    ok = table[table["status"] == "ok"]
    result = forecast({"p": table}, fractions=(0.3,), k=2, n_boot=50)
    at = trajectory_statistics(table, 0.3)
    assert (at["epoch"] == 2).all() and len(at) == len(ok)  # 0.3 · 10 = 3: the entry at epoch 2
    acc2 = [t[1]["train_acc"] for t in ok["trajectory"]]
    row = result[result["proxy"] == "train_acc"].iloc[0]
    assert row["rho"] == pytest.approx(spearmanr(acc2, ok["test_acc"]).statistic, abs=1e-12)
    final = [-t[1]["log_d"][-2] for t in ok["trajectory"]]  # higher is better: −log D
    row = result[result["proxy"] == "final_log_d"].iloc[0]
    assert row["rho"] == pytest.approx(spearmanr(final, ok["test_acc"]).statistic, abs=1e-12)
    hits = 0  # by hand: per seed, is the best final run among the top 2 by train acc at epoch 2?
    for _, sweep in ok.assign(score=acc2).groupby("seed"):
        hits += sweep.loc[sweep["test_acc"].idxmax(), "score"] >= sweep["score"].nlargest(2).min()
    row = result[result["proxy"] == "train_acc"].iloc[0]
    assert (row["hits"], row["sweeps"]) == (hits, 3)


@pytest.mark.slow
def test_the_report_draws_the_forecast_and_writes_its_table(tmp_path):
    save_table(_trajectory_table().assign(c=0.1, v=0.2, fit_r2=0.9, train_acc=0.9, key="k",
                                          log_d=lambda t: [[3, 2, 1, 0.5, 0.1]] * len(t)),
               tmp_path / "p.parquet")
    done = subprocess.run([str(CLI), "report", "p.parquet", "--boot", "50", "--forecast", "0.1,0.5",
                           "--forecast-out", "f.png", "--forecast-csv", "f.csv"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "f.png").stat().st_size > 10_000
    table = pd.read_csv(tmp_path / "f.csv")
    assert sorted(set(table["fraction"])) == [0.1, 0.5] and "regret" in table
    assert json.loads(json.dumps(list(table.columns)))[:3] == ["panel", "fraction", "proxy"]
    # a table that cannot be saved is kept elsewhere and said; the report still prints; rc 1
    done = subprocess.run([str(CLI), "report", "p.parquet", "--boot", "50", "--save-tables", "f.csv/t"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1 and "could not write table" in done.stderr, done.stderr
    assert "Spearman ρ" in done.stdout
    done = subprocess.run([str(CLI), "report", "p.parquet", "--boot", "50", "--save-tables", "t"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and "wrote t/p.parquet (24 runs)" in done.stderr, done.stderr
    assert len(load_table(tmp_path / "t" / "p.parquet")) == 24
