"""Spring–block phase diagram, figures, DNN-record reading and the CLI."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest

from dnn_spring.cli import main
from dnn_spring.spring import (
    FirstOrderConfig,
    LangevinConfig,
    load_trajectory_records,
    pick_lazy_active,
    plot_chain,
    plot_spring_phase_diagram,
    plot_spring_trajectories,
    scan_phase_diagram,
    simulate_first_order,
    trajectory_configs,
)

SHORT = LangevinConfig(t_max=100.0)


def test_scan_table_layout_and_corners():
    # corners of the default axes on a 2 x 2 grid, full reference length
    table = scan_phase_diagram(friction=[0.03, 0.0003], noise=[0.02, 0.0005], n_seeds=3, seed=0)
    assert len(table) == 4
    assert {"row", "col", "mu_right", "mu_left", "noise", "curve", "v", "c", "c_rel",
            "regime", "evenness"} <= set(table.columns)
    np.testing.assert_allclose(table["mu_left"] - table["mu_right"], 0.004)
    cell = table.set_index(["mu_right", "noise"])["regime"]
    assert cell[(0.03, 0.0005)] == "concave"  # high friction, low noise: top right
    assert cell[(0.0003, 0.02)] == "convex"  # low friction, high noise: bottom left
    assert len(table["curve"].iloc[0]) == 8


def test_scan_first_order_and_validation():
    table = scan_phase_diagram(FirstOrderConfig(n_steps=500), friction=[0.2], noise=[0.0, 0.5],
                               n_seeds=2)
    assert table["order"].eq(1).all() and len(table) == 2
    with pytest.raises(ValueError, match="`n_seeds` must be an integer >= 1, got 0"):
        scan_phase_diagram(SHORT, n_seeds=0)
    with pytest.raises(ValueError, match="`friction` must be a non-empty list"):
        scan_phase_diagram(SHORT, friction=[])
    with pytest.raises(TypeError, match="`base` must be"):
        scan_phase_diagram(object())


@pytest.mark.parametrize("shade", ["evenness", "curvature"])
def test_phase_diagram_figure(shade):
    table = scan_phase_diagram(SHORT, friction=[0.03, 0.001], noise=[0.02, 0.002, 0.001],
                               n_seeds=1)
    fig = plot_spring_phase_diagram(table, shade=shade)
    assert isinstance(fig, matplotlib.figure.Figure)
    cells = [ax for ax in fig.axes if ax.lines]
    assert len(cells) == 6
    # top row is the highest friction, first column the highest noise
    assert cells[0].get_ylabel() == "0.03" and cells[0].get_title() == "0.02"
    with pytest.raises(ValueError, match=r"Expected shade in \{.*\}, got 'accuracy'"):
        plot_spring_phase_diagram(table, shade="accuracy")


def _records():
    def rec(c_rel, slope):
        traj = [{"epoch": e, "log_d": list(np.linspace(2, 0, 5) * (1 - e / 20))} for e in (0, 5, 10)]
        return {"slope": slope, "noise": 0.1, "c_rel": c_rel, "regime": "linear", "trajectory": traj}

    return [rec(0.5, 1.0), rec(-0.9, 0.0), {"slope": 0.5, "c_rel": 0.0, "trajectory": []},
            rec(0.1, 0.4)]


def test_trajectory_records_from_json_jsonl_and_csv(tmp_path):
    records = _records()
    (tmp_path / "all.json").write_text(json.dumps(records))
    (tmp_path / "all.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    found = load_trajectory_records(tmp_path / "all.json")
    assert len(found) == 3 and load_trajectory_records(tmp_path / "all.jsonl") == found
    import pandas as pd

    frame = pd.DataFrame(records)
    frame["trajectory"] = frame["trajectory"].map(json.dumps)
    frame.to_csv(tmp_path / "table.csv", index=False)
    assert len(load_trajectory_records(tmp_path / "table.csv")) == 3
    lazy, active = pick_lazy_active(found)
    assert (lazy["c_rel"], active["c_rel"]) == (-0.9, 0.5)
    with pytest.raises(FileNotFoundError):
        load_trajectory_records(tmp_path / "missing")


def test_chain_and_trajectory_figures():
    res = simulate_first_order(FirstOrderConfig(n_steps=300), seed=0)
    assert isinstance(plot_chain(res), matplotlib.figure.Figure)
    configs = trajectory_configs(FirstOrderConfig(n_steps=300))
    assert configs["lazy"].mu_right > configs["active"].mu_right
    lazy, active = (simulate_first_order(configs[k], seed=0) for k in ("lazy", "active"))
    assert len(plot_spring_trajectories(lazy, active).axes) == 2
    fig = plot_spring_trajectories(lazy, active, pick_lazy_active(
        [r for r in _records() if r["trajectory"]]))
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 4


# ------------------------------------------------------------------------ CLI
def test_cli_simulate_json_and_png(tmp_path, capsys):
    out = tmp_path / "chain.png"
    status = main(["spring", "simulate", "--order", "1", "--n-steps", "200", "--mu-left", "0.2",
                   "--seed", "3", "--json", "--out", str(out), "--pdf"])
    assert status == 0 and out.exists() and out.with_suffix(".pdf").exists()
    record = json.loads(capsys.readouterr().out)
    assert record["order"] == 1 and record["mu_left"] == 0.2 and record["seed"] == 3
    assert record["regime"] in {"concave", "linear", "convex"}


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["spring", "simulate", "--order", "1", "--dt", "0.1"]) == 2
    assert "--dt: not a field of --order 1" in capsys.readouterr().err
    assert main(["spring", "simulate", "--t-max", "1", "--backend", "jax", "--out", ""]) == 2
    assert "Expected backend in" in capsys.readouterr().err
    assert main(["spring", "simulate", "--k", "-1", "--out", ""]) == 2
    assert "`k` must be > 0, got -1.0" in capsys.readouterr().err


def test_cli_phase_diagram_and_trajectories(tmp_path):
    png, table = tmp_path / "pd.png", tmp_path / "cells.csv"
    assert main(["spring", "phase-diagram", "--t-max", "50", "--friction", "0.03,0.001",
                 "--noise", "0.02,0.001", "--n-seeds", "1", "--out", str(png),
                 "--table", str(table), "--shade", "curvature"]) == 0
    assert png.exists() and table.exists()
    (tmp_path / "runs.json").write_text(json.dumps(_records()))
    traj = tmp_path / "traj.png"
    assert main(["spring", "trajectories", "--order", "1", "--n-steps", "200",
                 "--results", str(tmp_path / "runs.json"), "--out", str(traj)]) == 0
    assert traj.exists()
