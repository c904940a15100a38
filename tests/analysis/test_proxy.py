"""dnn-spring report: Spearman correlations of test accuracy with the load-curve statistics."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from dnn_spring.sweep._store import save_table
from dnn_spring.analysis._proxy import proxy_correlations

CLI = Path(sys.executable).with_name("dnn-spring")


def fake_table(n=40, seed=0, status_every=10):
    rng = np.random.default_rng(seed)
    acc = rng.uniform(0.8, 0.95, n)
    c = rng.normal(0, 0.5, n)
    curves = [list(np.linspace(3, 1 - 5 * (a - 0.8), 6)) for a in acc]  # final log D falls with acc
    return pd.DataFrame({"status": ["failed" if i % status_every == 0 else "ok" for i in range(n)],
                         "test_acc": acc, "c": c, "v": np.abs(c) + rng.uniform(0, 0.1, n),
                         "fit_r2": rng.uniform(0.5, 1, n), "log_d": curves, "slope": 0.0})


def test_rho_equals_scipy_on_the_ok_runs_and_the_interval_is_seeded():
    table = fake_table()
    result = proxy_correlations({"a": table, "b": fake_table(seed=1)}, n_boot=200, seed=3)
    ok = table[table["status"] == "ok"]
    row = result.set_index(["panel", "proxy"])
    assert row.loc[("a", "abs_c"), "rho"] == pytest.approx(spearmanr(ok["test_acc"], ok["c"].abs()).statistic)
    final = [curve[-2] for curve in ok["log_d"]]
    assert row.loc[("a", "final_log_d"), "rho"] == pytest.approx(-1.0)
    assert spearmanr(ok["test_acc"], final).statistic == pytest.approx(-1.0)
    assert row.loc[("a", "v"), "n"] == len(ok) and row.loc[("all", "v"), "n"] == 2 * len(ok)
    assert (result["low"] <= result["rho"] + 1e-12).all() and (result["rho"] <= result["high"] + 1e-12).all()
    again = proxy_correlations({"a": table, "b": fake_table(seed=1)}, n_boot=200, seed=3)
    pd.testing.assert_frame_equal(result, again)


@pytest.mark.slow
def test_bad_input_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="lacks columns"):
        proxy_correlations({"a": pd.DataFrame({"status": ["ok"]})})
    with pytest.raises(ValueError, match="no table"):
        proxy_correlations({})
    save_table(fake_table(), tmp_path / "ns.parquet")
    done = subprocess.run([str(CLI), "report", "ns.parquet", "--out", "r.png", "--boot", "50",
                           "--csv", "r.csv"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "final_log_d" in done.stdout and (tmp_path / "r.png").is_file()
    assert len(pd.read_csv(tmp_path / "r.csv")) == 4
    done = subprocess.run([str(CLI), "report", "missing.parquet"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
