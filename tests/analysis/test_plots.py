"""Phase-diagram figures on synthetic results tables (dnn_spring.analysis._phase_plots)."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from dnn_spring.analysis import _phase_plots as plots
from dnn_spring.cli import main as cli_main
from dnn_spring.sweep._store import save_table

SLOPES = [0.0, 0.5, 1.0]


def synthetic_table(axis="noise", values=(0.0, 0.4, 0.8), n_seeds=2, depth=5, trajectory=False):
    """Runs whose curvature goes from concave (α=0, no noise) to convex (α=1, noisy)."""
    rng = np.random.default_rng(0)
    rows = []
    ell = np.arange(depth, dtype=float)
    for slope in SLOPES:
        for rank, value in enumerate(values):
            noisy = rank / max(1, len(values) - 1)
            if axis == "batch_size":
                noisy = 1 - noisy
            bend = (noisy + slope) - 1.0  # < 0 concave, > 0 convex
            for seed in range(n_seeds):
                hidden = 3 - ell / (depth - 1) * 2 - bend * 0.8 * np.sin(np.pi * ell / (depth - 1))
                log_d = (hidden + rng.normal(0, 0.01, depth)).tolist() + [-5.0]
                traj = [{"epoch": e, "log_d": (np.array(log_d) * (1 + 1 / (e + 1))).tolist()}
                        for e in (0, 5, 10)] if trajectory else []
                rows.append({"slope": slope, "noise": 0.0, "lr": 1e-3, "dropout": 0.0,
                             "batch_size": 0, axis: value, "seed": seed, "status": "ok",
                             "key": f"{slope}-{value}-{seed}", "log_d": log_d,
                             "test_acc": 0.9 - abs(bend) / 10, "c": bend,
                             "trajectory": traj})
    return pd.DataFrame(rows)


def cell_axes(fig):
    """{(slope, value): axes} of the phase-diagram cells, parsed from their labels."""
    out = {}
    for ax in fig.axes:
        label = ax.get_label()
        if label.startswith("cell "):
            slope, other = label[5:].split(" ")
            out[(float(slope.split("=")[1]), float(other.split("=")[1]))] = ax
    return out


@pytest.mark.parametrize("axis, values, expected_columns", [
    ("noise", (0.0, 0.4, 0.8), [0.8, 0.4, 0.0]),
    ("lr", (1e-4, 1e-2, 0.5), [0.5, 1e-2, 1e-4]),
    ("dropout", (0.0, 0.1, 0.3), [0.3, 0.1, 0.0]),
    ("batch_size", (0, 5, 640), [5, 640, 0]),  # 0 = full batch, the least noisy
])
def test_phase_diagram_grid_layout(axis, values, expected_columns):
    table = synthetic_table(axis, values)
    fig = plots.phase_diagram(table, title="t")
    assert isinstance(fig, Figure)
    cells = cell_axes(fig)
    assert len(cells) == len(SLOPES) * len(values)
    x = {v: cells[(0.0, v)].get_position().x0 for v in values}
    assert sorted(values, key=x.get) == expected_columns  # noisy on the left
    y = {s: cells[(s, values[0])].get_position().y0 for s in SLOPES}
    assert sorted(SLOPES, key=y.get, reverse=True) == SLOPES  # α = 0 on top
    # One mean curve per cell over ℓ = 0..L-1 (logits point left out).
    line = cells[(0.0, values[0])].get_lines()[0]
    assert len(line.get_xdata()) == 5
    # The background shade follows mean test accuracy: best cell is the lightest.
    best = table.groupby(["slope", axis])["test_acc"].mean().idxmax()
    shade = {k: np.mean(ax.get_facecolor()[:3]) for k, ax in cells.items()}
    assert max(shade, key=shade.get) == best


def test_cells_average_seeds_and_colour_regimes():
    table = synthetic_table()
    cells = plots.cell_table(table)
    assert len(cells) == 9 and (cells["n"] == 2).all()
    corner = cells[(cells["slope"] == 0.0) & (cells["noise"] == 0.0)].iloc[0]
    assert corner["regime"] == "concave" and corner["curve"].shape == (5,)
    assert corner["logits"] == pytest.approx(-5.0)
    opposite = cells[(cells["slope"] == 1.0) & (cells["noise"] == 0.8)].iloc[0]
    assert opposite["regime"] == "convex"
    # A diverged seed is left out and the count shows in the cell.
    table.loc[0, "status"] = "diverged"
    fig = plots.phase_diagram(table, show_logits=True)
    ax = cell_axes(fig)[(0.0, 0.0)]
    assert [t.get_text() for t in ax.texts] == ["n=1"]


def test_axis_inference_and_errors():
    table = synthetic_table("dropout", (0.0, 0.3))
    assert plots.infer_axis(table) == "dropout"
    assert plots.axis_order("batch_size", [0, 10, 5]) == [5, 10, 0]
    with pytest.raises(ValueError, match="`axis` must be one of"):
        plots.axis_order("width", [1])
    with pytest.raises(ValueError, match="lacks columns"):
        plots.phase_diagram(table.drop(columns="log_d"))
    both = table.assign(lr=np.where(table["seed"] == 0, 1e-3, 1e-2))
    with pytest.raises(ValueError, match="cannot tell the noise axis"):
        plots.phase_diagram(both)
    with pytest.raises(ValueError, match="no record carries a trajectory"):
        plots.trajectory_grid(table)


def test_four_panel_curvature_and_trajectories():
    tables = [synthetic_table(a, v) for a, v in [("noise", (0.0, 0.8)), ("lr", (1e-3, 0.1)),
                                                  ("dropout", (0.0, 0.2)),
                                                  ("batch_size", (10, 0))]]
    fig = plots.four_panel(tables, titles=["ns", "lr", "dp", "bm"])
    assert sum(ax.get_label().startswith("cell ") for ax in fig.axes) == 4 * 3 * 2
    heat = plots.curvature_map(synthetic_table())
    image = heat.axes[0].get_images()[0].get_array()
    assert image.shape == (3, 3)
    assert image[0, -1] < 0 < image[-1, 0]  # concave top-right, convex bottom-left
    traj = plots.trajectory_grid(synthetic_table(trajectory=True))
    lines = cell_axes(traj)[(0.5, 0.4)].get_lines()
    assert len(lines) == 5 and list(lines[0].get_xdata()) == [0, 5, 10]


def test_four_panel_keeps_panels_apart():
    # A panel's colour-bar label must not run into the slope label of the panel on its right.
    tables = [synthetic_table(a, v) for a, v in [("noise", (0.0, 0.8)), ("lr", (1e-3, 0.1)),
                                                  ("dropout", (0.0, 0.2)),
                                                  ("batch_size", (10, 0))]]
    fig = plots.four_panel(tables, titles=["ns", "lr", "dp", "bm"])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (top_left, top_right), (bottom_left, _) = [
        [sub.get_tightbbox(renderer) for sub in row] for row in np.reshape(fig.subfigs, (2, 2))]
    assert (top_right.x0 - top_left.x1) / fig.dpi > 0.2  # inches
    assert (top_left.y0 - bottom_left.y1) / fig.dpi > 0.2
    cells = cell_axes(fig.subfigs[0])
    left, right = cells[(0.0, 0.8)].get_window_extent(), cells[(0.0, 0.0)].get_window_extent()
    assert right.x0 - left.x1 < 0.05 * fig.dpi  # the cells of one panel still touch


def test_plot_cli_writes_files(tmp_path):
    table = save_table(synthetic_table(trajectory=True), tmp_path / "ns.parquet")
    out = tmp_path / "figs" / "pd.png"
    assert cli_main(["plot", "phase-diagram", str(table), "--out", str(out), "--pdf"]) == 0
    assert out.stat().st_size > 1000 and out.with_suffix(".pdf").exists()
    for kind in ("curvature", "trajectories"):
        target = tmp_path / f"{kind}.png"
        assert cli_main(["plot", kind, str(table), "--out", str(target)]) == 0
        assert target.exists()
    csv = save_table(synthetic_table("lr", (1e-3, 0.1)), tmp_path / "lr.csv")
    four = tmp_path / "four.png"
    assert cli_main(["plot", "four-panel", str(table), str(csv), "--out", str(four)]) == 0
    assert four.exists()
    assert cli_main(["plot", "phase-diagram", str(tmp_path / "missing")]) == 2


def test_a_second_varying_axis_is_refused_not_averaged(tmp_path, capsys):
    table = pd.concat([synthetic_table("lr", (1e-3, 1e-2)).assign(noise=p) for p in (0.0, 0.4)],
                      ignore_index=True)
    message = (r"the table has 2 values of `noise` \(0, 0.4\) besides the axis `lr`, and cells "
               r"would average over them; select one \(`--where noise=0` on the command line, "
               r"table\[table\['noise'\] == 0\] in Python\) or plot `axis='noise'`")
    for draw in (plots.phase_diagram, plots.curvature_map, plots.cell_table):
        with pytest.raises(ValueError, match=message):
            draw(table, axis="lr")
    path = save_table(table, tmp_path / "grid.parquet")
    out = tmp_path / "pd.png"
    assert cli_main(["plot", "phase-diagram", str(path), "--axis", "lr", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 values of `noise`" in err and not out.exists()
    assert cli_main(["plot", "phase-diagram", str(path), "--axis", "lr", "--where", "noise=0.4",
                     "--out", str(out)]) == 0
    assert out.exists()
    assert cli_main(["plot", "phase-diagram", str(path), "--where", "noise=0.3"]) == 2
    assert "no run has noise=0.3; the table has 0, 0.4" in capsys.readouterr().err
