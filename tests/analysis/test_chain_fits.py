"""Chains beside networks: reading run records with trajectories, the figure, the CLI."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

import dnn_spring
from dnn_spring.cli import main
from dnn_spring.analysis._chain_fits import load_trajectory_records, pick_lazy_active, plot_spring_trajectories
from dnn_spring.spring import FirstOrderConfig, simulate_first_order, trajectory_configs


def _records():
    def rec(c_rel, slope):
        traj = [{"epoch": e, "log_d": list(np.linspace(2, 0, 5) * (1 - e / 20))} for e in (0, 5, 10)]
        return {"slope": slope, "noise": 0.1, "c_rel": c_rel, "regime": "linear", "trajectory": traj}

    return [rec(0.5, 1.0), rec(-0.9, 0.0), {"slope": 0.5, "c_rel": 0.0, "trajectory": []},
            rec(0.1, 0.4)]


def _chains():
    configs = trajectory_configs(FirstOrderConfig(n_steps=300))
    return [simulate_first_order(configs[k], seed=0) for k in ("lazy", "active")]


def test_trajectory_records_from_json_jsonl_and_csv(tmp_path):
    records = _records()
    (tmp_path / "all.json").write_text(json.dumps(records))
    (tmp_path / "all.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    found = load_trajectory_records(tmp_path / "all.json")
    assert len(found) == 3 and load_trajectory_records(tmp_path / "all.jsonl") == found
    frame = pd.DataFrame(records)
    frame["trajectory"] = frame["trajectory"].map(json.dumps)
    frame.to_csv(tmp_path / "table.csv", index=False)
    assert len(load_trajectory_records(tmp_path / "table.csv")) == 3
    lazy, active = pick_lazy_active(found)
    assert (lazy["c_rel"], active["c_rel"]) == (-0.9, 0.5)
    assert pick_lazy_active(found[:1]) == found[:1]
    with pytest.raises(FileNotFoundError):
        load_trajectory_records(tmp_path / "missing")


def test_chains_beside_networks_figure():
    lazy, active = _chains()
    assert len(plot_spring_trajectories(lazy, active).axes) == 2  # chains only
    with_dnn = [r for r in _records() if r["trajectory"]]
    fig = plot_spring_trajectories(lazy, active, pick_lazy_active(with_dnn))
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 4
    assert fig.axes[2].get_title().startswith("DNN: α=0.0")  # the concave run, lazy side
    one = plot_spring_trajectories(lazy, active, with_dnn[:1])
    assert len([ax for ax in one.axes if ax.get_visible()]) == 3


def test_public_names_of_the_analysis_package():
    import dnn_spring.analysis
    for name in ("load_trajectory_records", "pick_lazy_active", "plot_spring_trajectories"):
        assert getattr(dnn_spring.analysis, name) is getattr(dnn_spring.analysis._chain_fits, name)
        assert name in dnn_spring.analysis.__all__ and not hasattr(dnn_spring.spring, name)


def test_the_chain_package_imports_nothing_about_networks():
    forbidden = {"records", "train", "batched", "sweep", "models", "data", "compare"}
    package = Path(dnn_spring.__file__).parent / "spring"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = ["dnn_spring", "spring"][:max(0, 3 - node.level)] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                names = [module] + [f"{module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                assert not (parts[0] == "dnn_spring" and len(parts) > 1 and parts[1] in forbidden), \
                    f"{path.name} imports {name}"


def test_cli_trajectories_with_records(tmp_path, capsys):
    (tmp_path / "runs.json").write_text(json.dumps(_records()))
    traj = tmp_path / "traj.png"
    assert main(["spring", "trajectories", "--order", "1", "--n-steps", "200",
                 "--results", str(tmp_path / "runs.json"), "--out", str(traj)]) == 0
    assert traj.exists()
    (tmp_path / "none.json").write_text(json.dumps(_records()[2:3]))
    assert main(["spring", "trajectories", "--order", "1", "--n-steps", "200",
                 "--results", str(tmp_path / "none.json"), "--out", str(traj)]) == 0
    assert "drawing the chains only" in capsys.readouterr().err
