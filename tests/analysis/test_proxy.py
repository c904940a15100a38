"""dnn-spring report: Spearman ρ of test accuracy and of the gap with each statistic and baseline."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, rankdata, spearmanr

from dnn_spring.sweep._store import load_table, save_table
from dnn_spring.analysis._proxy import proxy_correlations, proxy_table

CLI = Path(sys.executable).with_name("dnn-spring")
PAPER = Path(__file__).resolve().parents[2] / "figs" / "paper_mnist5k"


def fake_table(n=40, seed=0, status_every=10):
    rng = np.random.default_rng(seed)
    acc = rng.uniform(0.8, 0.95, n)
    c = rng.normal(0, 0.5, n)
    curves = [list(np.linspace(3, 1 - 5 * (a - 0.8), 6)) for a in acc]  # final log D falls with acc
    return pd.DataFrame({"status": ["failed" if i % status_every == 0 else "ok" for i in range(n)],
                         "test_acc": acc, "c": c, "v": np.abs(c) + rng.uniform(0, 0.1, n),
                         "fit_r2": rng.uniform(0.5, 1, n), "log_d": curves, "slope": 0.0,
                         "train_acc": np.clip(acc + rng.normal(0.03, 0.02, n), 0, 1),
                         "train_loss": rng.uniform(0.01, 0.5, n), "epochs_run": 100})


def _partial_reference(target, statistic, control):
    """Partial Spearman ρ the long way: regress the ranks of ``control`` out of both
    rank vectors by least squares, then scipy's Pearson r of the residuals."""
    z = np.column_stack([np.ones(len(control)), rankdata(control)])
    res = [r - z @ np.linalg.lstsq(z, r, rcond=None)[0] for r in (rankdata(target), rankdata(statistic))]
    return pearsonr(*res).statistic


def test_rho_equals_scipy_on_the_ok_runs_and_the_interval_is_seeded():
    table = fake_table()
    result = proxy_correlations({"a": table, "b": fake_table(seed=1)}, n_boot=200, seed=3)
    ok = table[table["status"] == "ok"]
    row = result[result["target"] == "test_acc"].set_index(["panel", "proxy"])
    # signed so that higher should mean better: |c| and final log D enter with a minus
    assert row.loc[("a", "abs_c"), "rho"] == pytest.approx(-spearmanr(ok["test_acc"], ok["c"].abs()).statistic)
    final = [curve[-2] for curve in ok["log_d"]]
    assert row.loc[("a", "final_log_d"), "rho"] == pytest.approx(1.0)
    assert spearmanr(ok["test_acc"], final).statistic == pytest.approx(-1.0)
    assert row.loc[("a", "train_acc"), "rho"] == pytest.approx(spearmanr(ok["test_acc"], ok["train_acc"]).statistic)
    assert row.loc[("a", "v"), "n"] == len(ok) and row.loc[("all", "v"), "n"] == 2 * len(ok)
    assert row.loc[("a", "fit_r2"), "partial"] == pytest.approx(
        _partial_reference(ok["test_acc"], ok["fit_r2"], ok["train_acc"]), abs=1e-10)
    assert np.isnan(row.loc[("a", "train_acc"), "partial"])
    assert (result["low"] <= result["rho"] + 1e-12).all() and (result["rho"] <= result["high"] + 1e-12).all()
    gap = result[result["target"] == "gap"].set_index(["panel", "proxy"])
    assert gap.loc[("a", "v"), "rho"] == pytest.approx(
        spearmanr(ok["test_acc"] - ok["train_acc"], -ok["v"]).statistic)
    again = proxy_correlations({"a": table, "b": fake_table(seed=1)}, n_boot=200, seed=3)
    pd.testing.assert_frame_equal(result, again)
    other = proxy_correlations({"a": table, "b": fake_table(seed=1)}, n_boot=200, seed=4)
    assert not np.allclose(other["low"], result["low"], equal_nan=True)


def _cell(stdout: str, title: str, label: str, panel: str = "ns_nl") -> float:
    """A number of one printed pivot: the block starting with ``title``, the row ``panel``,
    the column ``label`` (labels may hold spaces: columns are found by their position)."""
    block = stdout.split(title, 1)[1].split("\n\n", 1)[0].splitlines()
    header, row = block[1], next(line for line in block if line.startswith(panel))
    end = header.index(label) + len(label)
    start = max(header.rfind("  ", 0, header.index(label)), 0)
    return float(row[start:end])


def test_the_report_of_the_committed_ns_nl_table_matches_scipy(capsys):
    from dnn_spring.cli import main

    source = PAPER / "ns_nl.parquet"
    assert main(["report", str(source), "--boot", "50"]) == 0
    out = capsys.readouterr().out
    ok = load_table(source)
    ok = ok[ok["status"] == "ok"]
    test, train = ok["test_acc"].astype(float), ok["train_acc"].astype(float)
    final = ok["log_d"].map(lambda c: c[-2]).astype(float)
    title = "Spearman ρ with test accuracy"
    assert _cell(out, title, "train acc") == pytest.approx(spearmanr(test, train).statistic, abs=0.005)
    assert _cell(out, title, "−final log D") == pytest.approx(-spearmanr(test, final).statistic, abs=0.005)
    partial = "partial Spearman ρ given training accuracy with test accuracy"
    assert _cell(out, partial, "−final log D") == pytest.approx(
        _partial_reference(test, -final, train), abs=0.005)
    assert _cell(out, partial, "fit R²") == pytest.approx(
        _partial_reference(test, ok["fit_r2"].astype(float), train), abs=0.005)
    assert "−gap (test − train accuracy)" in out and "train loss: on the clean training labels for 0 of 162" in out


def test_the_clean_final_loss_comes_from_a_trajectory_that_reaches_the_last_epoch():
    table = fake_table(4).assign(status="ok")
    table["trajectory"] = [[{"epoch": 100, "log_d": [1.0] * 6, "train_acc": 0.9, "train_loss": 0.25}],
                           [{"epoch": 50, "log_d": [1.0] * 6, "train_acc": 0.9, "train_loss": 0.75}],
                           [], [{"epoch": 100, "log_d": [1.0] * 6}]]
    runs = proxy_table(table)
    assert runs["train_loss"].iloc[0] == 0.25 and runs.attrs["clean_loss"] == 1
    assert list(runs["train_loss"].iloc[1:]) == list(table["train_loss"].iloc[1:])


@pytest.mark.slow
def test_bad_input_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="lacks columns"):
        proxy_correlations({"a": pd.DataFrame({"status": ["ok"]})})
    with pytest.raises(ValueError, match="no table"):
        proxy_correlations({})
    with pytest.raises(ValueError, match="unknown target"):
        proxy_correlations({"a": fake_table()}, targets=["loss"])
    save_table(fake_table(), tmp_path / "ns.parquet")
    done = subprocess.run([str(CLI), "report", "ns.parquet", "--out", "r.png", "--boot", "50",
                           "--csv", "r.csv"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "−final log D" in done.stdout and (tmp_path / "r.png").is_file()
    assert len(pd.read_csv(tmp_path / "r.csv")) == 2 * 6  # two targets, six statistics
    for args, words in ((["missing.parquet"], "missing.parquet"),
                        (["ns.parquet", "--forecast", "0.1"], "no run has a trajectory"),
                        (["ns.parquet", "--forecast", "2"], "fractions must be in [0, 1]"),
                        (["ns.parquet", "--weightwatcher"], "results folder")):
        done = subprocess.run([str(CLI), "report", *args], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, (args, done.stderr)
        assert words in done.stderr, (args, done.stderr)
