"""Spring–block phase diagram, chain figures and the CLI."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest

from dnn_spring.cli import main
from dnn_spring.spring import (
    FirstOrderConfig,
    LangevinConfig,
    plot_chain,
    plot_chain_trajectories,
    plot_spring_phase_diagram,
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
    with pytest.raises(ValueError, match=r"`shade` must be one of \{.*\}, got 'accuracy'"):
        plot_spring_phase_diagram(table, shade="accuracy")


def test_chain_and_trajectory_figures():
    res = simulate_first_order(FirstOrderConfig(n_steps=300), seed=0)
    assert isinstance(plot_chain(res), matplotlib.figure.Figure)
    configs = trajectory_configs(FirstOrderConfig(n_steps=300))
    assert configs["lazy"].mu_right > configs["active"].mu_right
    lazy, active = (simulate_first_order(configs[k], seed=0) for k in ("lazy", "active"))
    assert len(plot_chain_trajectories(lazy, active).axes) == 2
    with pytest.raises(ValueError, match="`axes` must hold two Axes, got 1"):
        plot_chain_trajectories(lazy, active, axes=[plot_chain(res).axes[0]])


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
    assert "`backend` must be one of" in capsys.readouterr().err
    assert main(["spring", "simulate", "--k", "-1", "--out", ""]) == 2
    assert "`k` must be > 0, got -1.0" in capsys.readouterr().err
    assert main(["spring", "simulate", "--order", "1", "--backend", "torch", "--out", ""]) == 2
    assert ("`backend` must be one of {'numpy'}, got 'torch' (the --order 1 chain has no other "
            "backend)") in capsys.readouterr().err
    assert main(["spring", "phase-diagram", "--friction", "0.1,high", "--out", ""]) == 2
    assert "`--friction` must be comma-separated numbers, got '0.1,high'" in capsys.readouterr().err
    assert main(["spring", "phase-diagram", "--asymmetry", "-1", "--out", ""]) == 2
    assert "`asymmetry` must be >= 0, got -1.0" in capsys.readouterr().err


def test_cli_phase_diagram_and_chain_trajectories(tmp_path):
    png, table = tmp_path / "pd.png", tmp_path / "cells.csv"
    assert main(["spring", "phase-diagram", "--t-max", "50", "--friction", "0.03,0.001",
                 "--noise", "0.02,0.001", "--n-seeds", "1", "--out", str(png),
                 "--table", str(table), "--shade", "curvature"]) == 0
    assert png.exists() and table.exists()
    traj = tmp_path / "traj.png"
    assert main(["spring", "trajectories", "--order", "1", "--n-steps", "200",
                 "--out", str(traj)]) == 0
    assert traj.exists()
