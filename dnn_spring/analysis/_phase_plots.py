"""Phase-diagram figures from a sweep's results table (docs/science.md#sweeps).

Every function takes the table of :func:`dnn_spring.sweep._store.collect` (one row
per run) and returns a matplotlib Figure.  The grid of a panel is always the
same: rows are the LeakyReLU slopes α, from 0 (ReLU, top) to 1 (linear,
bottom); columns are the noise axis from most noisy (left) to least noisy
(right): large → small for ``noise``, ``lr`` and ``dropout``, small → large
for ``batch_size`` (``batch_size=0``, full batch, counts as the largest).  A
table in which another of these axes also takes several values is refused
(select one value of it first), as its cells would average over them.

Conventions of a phase-diagram cell: the seed mean of log D against ℓ over
``ℓ = 0 .. L-1``, the logits point left out as in the shape statistics
(``show_logits=True`` adds it as an open marker); the band is ± one standard
deviation over seeds; the line's colour is the regime of the mean curve
(:data:`~dnn_spring._style.REGIME_COLORS`); each cell has its own y range (the
shape is what matters); the grey background is the mean test accuracy (light
= high) with a colour bar.  Only runs with status "ok" are drawn; a cell with
fewer seeds than the fullest cell shows ``n=k``, an empty cell a cross.
"""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import CenteredNorm, ListedColormap, Normalize
from matplotlib.cm import ScalarMappable

from dnn_spring._style import CURVE_COLOR, REGIME_COLORS, figure_style
from dnn_spring._checks import check_choice
from dnn_spring.sweep._grids import NOISE_AXES
from dnn_spring.metrics._shape import load_shape

__all__ = ["infer_axis", "axis_order", "warn_mixed", "cell_table", "phase_diagram", "four_panel",
           "curvature_map", "heat_map", "trajectory_grid"]

logger = logging.getLogger("dnn_spring.analysis._phase_plots")

AXIS_LABELS = {"noise": "data noise p", "lr": "learning rate", "dropout": "dropout p",
               "batch_size": "batch size"}
_CELL_IN = 0.6  # inches per cell
_PANEL_GAP_IN = 0.35  # between `four_panel` panels: a colour-bar label clears the next panel
_ACC_CMAP = ListedColormap(plt.get_cmap("Greys_r")(np.linspace(0.3, 0.97, 256)), name="acc_grey")
# Fields that may differ between the runs of one panel.
_VARYING_OK = set(NOISE_AXES) | {"slope", "seed", "key"}
_CONFIG_FIELDS = ("arch", "depth", "width", "dataset", "n_train", "optimizer", "epochs",
                  "init", "batchnorm", "channels", "weight_decay")


def infer_axis(table: pd.DataFrame) -> str:
    """The noise axis of a sweep table: the one field of ``noise``, ``lr``,
    ``dropout``, ``batch_size`` that takes several values."""
    present = [a for a in NOISE_AXES if a in table.columns]
    varying = [a for a in present if table[a].nunique() > 1]
    if len(varying) == 1:
        return varying[0]
    if not varying and present:
        return present[0]
    raise ValueError(f"cannot tell the noise axis: {varying or 'none'} vary; pass `axis`")


def axis_order(axis: str, values) -> list:
    """Sort axis values from most noisy (first column) to least noisy."""
    check_choice("axis", axis, NOISE_AXES)
    values = sorted(set(values), key=lambda v: np.inf if axis == "batch_size" and v == 0 else v)
    return values if axis == "batch_size" else values[::-1]


def _check_table(table: pd.DataFrame, axis, curve: str = "log_d") -> str:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"`table` must be a DataFrame, got {type(table).__name__}")
    if not len(table):
        raise ValueError("the table has no runs")
    missing = {"slope", "status", curve, "test_acc"} - set(table.columns)
    if missing:
        raise ValueError(f"the table lacks columns {sorted(missing)}; is it a `collect` table?")
    axis = infer_axis(table) if axis is None else axis
    if axis not in table.columns:
        raise ValueError(f"`axis` {axis!r} is not a column of the table")
    for other in (a for a in NOISE_AXES if a != axis and a in table.columns):
        values = sorted(table[other].dropna().unique())
        if len(values) > 1:
            raise ValueError(f"the table has {len(values)} values of `{other}` "
                             f"({', '.join(f'{v:g}' for v in values)}) besides the axis "
                             f"`{axis}`, and cells would average over them; select one (`--where "
                             f"{other}={values[0]:g}` on the command line, table[table[{other!r}] "
                             f"== {values[0]:g}] in Python) or plot `axis={other!r}`")
    warn_mixed(table, "cells average over them")
    return axis


def warn_mixed(table: pd.DataFrame, consequence: str, what: str = "the table") -> list:
    """Warn in one line, and return them, when runs differ in ``epochs``, ``depth``, ... ."""
    mixed = [f for f in _CONFIG_FIELDS if f in table.columns and table[f].nunique() > 1]
    if mixed:
        logger.warning("%s mixes runs with different %s; %s", what, mixed, consequence)
    return mixed


def _mean_curve(curves):
    lengths = {len(c) for c in curves}
    if len(lengths) > 1:
        keep = max(lengths, key=lambda n: sum(len(c) == n for c in curves))
        curves = [c for c in curves if len(c) == keep]
    stack = np.asarray(curves, dtype=np.float64)
    return stack.mean(axis=0), stack.std(axis=0), len(stack)


def cell_table(table: pd.DataFrame, *, axis: "str | None" = None, curve: str = "log_d") -> pd.DataFrame:
    """Seed statistics of every (slope, axis value) cell, from the ``curve`` column
    (``"log_d"``, or ``"log_d_pinv32"`` for the original code's float32 metric).

    Returns
    -------
    DataFrame, one row per cell
        ``slope``, the axis, ``n`` (ok runs), ``n_runs``, ``test_acc`` (mean),
        ``curve`` and ``curve_std`` (arrays of shape (L,) over ℓ = 0..L-1),
        ``logits`` (mean logits log D), ``c``, ``regime`` of the mean curve.
    """
    return _cells(table, _check_table(table, axis, curve), curve)


def _cells(table: pd.DataFrame, axis: str, curve: str = "log_d") -> pd.DataFrame:
    rows = []
    for (slope, value), runs in table.groupby(["slope", axis], sort=False):
        ok = runs[(runs["status"] == "ok") & runs[curve].map(lambda c: isinstance(c, (list, tuple, np.ndarray)) and len(c) >= 4)]
        row = {"slope": slope, axis: value, "n": len(ok), "n_runs": len(runs),
               "test_acc": ok["test_acc"].mean() if len(ok) else np.nan,
               "curve": None, "curve_std": None, "logits": np.nan, "c": np.nan, "regime": None}
        if len(ok):
            full = [np.asarray(c, dtype=np.float64) for c in ok[curve]]
            mean, std, row["n"] = _mean_curve(full)
            row.update(curve=mean[:-1], curve_std=std[:-1], logits=mean[-1])
            if np.all(np.isfinite(mean[:-1])):
                shape = load_shape(mean[:-1], logits=None)
                row.update(c=shape.c, regime=shape.regime)
        rows.append(row)
    return pd.DataFrame(rows)


def _panel_size(n_rows: int, n_cols: int) -> tuple:
    return (2.0 + _CELL_IN * n_cols, 1.4 + _CELL_IN * n_rows)


def _new_figure(size):
    fig = plt.figure(figsize=size, layout="constrained")
    # Cells touch, as in the paper's figure.
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.0, hspace=0.0)
    return fig


def _fmt(value) -> str:
    return "full" if value == 0 else f"{value:g}"


def _grid(target, cells, axis):
    """Create the slope × axis grid of small axes on a Figure or SubFigure."""
    slopes = sorted(cells["slope"].unique())
    columns = axis_order(axis, cells[axis].unique())
    axes = target.subplots(len(slopes), len(columns), squeeze=False)
    for i, slope in enumerate(slopes):
        for j, value in enumerate(columns):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_linewidth(0.4)
            ax.set_label(f"cell slope={slope:g} {axis}={value:g}")
            if j == 0:
                ax.set_ylabel(f"{slope:g}", rotation=0, ha="right", va="center")
            if i == 0:
                ax.set_title(_fmt(value) if axis == "batch_size" else f"{value:g}",
                             fontsize=7, rotation=45 if axis == "lr" else 0)
    target.supylabel("slope α  (0 = ReLU)")
    target.supxlabel(f"{AXIS_LABELS[axis]}  (noise decreases →)")
    return axes, slopes, columns


def _draw_cell(ax, cell, n_full, show_logits) -> None:
    if cell is None or cell["curve"] is None:
        ax.set_facecolor("white")
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.6)
        ax.plot([0, 1], [1, 0], color="0.6", lw=0.6)
        return
    curve, std = cell["curve"], cell["curve_std"]
    depth = np.arange(curve.size)
    color = REGIME_COLORS.get(cell["regime"], CURVE_COLOR)
    ax.fill_between(depth, curve - std, curve + std, color=color, alpha=0.25, lw=0)
    ax.plot(depth, curve, color=color, lw=1.2)
    if show_logits:
        ax.plot([curve.size], [cell["logits"]], "o", mfc="none", mec=color, ms=2.5, mew=0.6)
    if cell["n"] < n_full:
        ax.text(0.97, 0.95, f"n={cell['n']}", transform=ax.transAxes, ha="right", va="top", fontsize=5)


def _draw_panel(target, table, *, axis, title=None, show_logits=False, curve="log_d"):
    cells = _cells(table, axis, curve)
    axes, slopes, columns = _grid(target, cells, axis)
    acc = cells["test_acc"].to_numpy(dtype=float)
    lo, hi = (np.nanmin(acc), np.nanmax(acc)) if np.isfinite(acc).any() else (0.0, 1.0)
    norm = Normalize(lo, hi if hi > lo else lo + 1e-3)
    lookup = {(row.slope, getattr(row, axis)): row._asdict() for row in cells.itertuples(index=False)}
    n_full = int(cells["n"].max())
    for i, slope in enumerate(slopes):
        for j, value in enumerate(columns):
            cell = lookup.get((slope, value))
            if cell is not None and np.isfinite(cell["test_acc"]):
                axes[i, j].set_facecolor(_ACC_CMAP(norm(cell["test_acc"])))
            _draw_cell(axes[i, j], cell, n_full, show_logits)
    bar = target.colorbar(ScalarMappable(norm, _ACC_CMAP), ax=axes, shrink=0.9, aspect=30)
    bar.set_label("mean test accuracy")
    handles = [plt.Line2D([], [], color=c, lw=1.5, label=r) for r, c in REGIME_COLORS.items()]
    target.legend(handles=handles, loc="outside upper right", ncol=3, fontsize=7)
    if title:
        target.suptitle(title, x=0.02, ha="left")
    return axes


def phase_diagram(table: pd.DataFrame, *, axis: "str | None" = None, title: "str | None" = None,
                  show_logits: bool = False, curve: str = "log_d"):
    """One phase-diagram panel: seed-averaged load curves on an accuracy background.

    Parameters
    ----------
    table : DataFrame
        A collect table (columns ``slope``, the axis, ``status``, ``log_d``,
        ``test_acc``).
    axis : {"noise", "lr", "dropout", "batch_size"}, optional
        The noise axis; inferred as the one that varies when omitted.
    title : str, optional
    show_logits : bool, default=False
        Also mark the mean logits log D as an open circle at ℓ = L.
    curve : str, default="log_d"
        The list column drawn: ``"log_d_pinv32"`` draws the original code's
        float32 metric (records of 0.5.0 on).

    Returns
    -------
    matplotlib.figure.Figure
    """
    axis = _check_table(table, axis, curve)
    shape = (table["slope"].nunique(), table[axis].nunique())
    with figure_style():
        fig = _new_figure(_panel_size(*shape))
        _draw_panel(fig, table, axis=axis, title=title, show_logits=show_logits, curve=curve)
    return fig


def four_panel(tables, *, axes=None, titles=None, curve: str = "log_d"):
    """Several phase-diagram panels in one figure (2 × 2 for the four MLP sweeps).

    Parameters
    ----------
    tables : sequence of DataFrame
        One collect table per panel, e.g. ns_nl, lr_nl, dp_nl, bm_nl.
    axes, titles : sequence, optional
        Noise axis (inferred when None) and title of each panel.
    curve : str, default="log_d"
        The list column drawn, as in :func:`phase_diagram`.
    """
    tables = list(tables)
    if not tables:
        raise ValueError("`tables` must hold at least one table")
    axes = list(axes) if axes is not None else [None] * len(tables)
    titles = list(titles) if titles is not None else [None] * len(tables)
    if not len(axes) == len(titles) == len(tables):
        raise ValueError(f"`axes` and `titles` must have {len(tables)} entries each")
    axes = [_check_table(t, a, curve) for t, a in zip(tables, axes)]
    sizes = [_panel_size(t["slope"].nunique(), t[a].nunique()) for t, a in zip(tables, axes)]
    n_cols = 2 if len(tables) == 4 else len(tables)
    n_rows = -(-len(tables) // n_cols)
    width = max(sum(s[0] for s in sizes[r * n_cols:(r + 1) * n_cols]) for r in range(n_rows))
    height = sum(max(s[1] for s in sizes[r * n_cols:(r + 1) * n_cols]) for r in range(n_rows))
    width += _PANEL_GAP_IN * (n_cols - 1)
    height += 0.3 * n_rows + _PANEL_GAP_IN * (n_rows - 1)
    with figure_style():
        fig = _new_figure((width, height))
        # The subfigure grid's own wspace/hspace override the layout engine's zero spacing
        # (which keeps the cells of a panel touching); constrained layout then leaves
        # wspace / n_cols of the figure width between neighbouring panels.
        wspace, hspace = n_cols * _PANEL_GAP_IN / width, n_rows * _PANEL_GAP_IN / height
        subfigs = fig.subfigures(n_rows, n_cols, squeeze=False, wspace=wspace,
                                 hspace=hspace).ravel()
        for sub, table, axis, title in zip(subfigs, tables, axes, titles):
            _draw_panel(sub, table, axis=axis, title=title, curve=curve)
    return fig


def heat_map(ax, data, rows, cols, axis: str, *, label: str, cmap: str = "viridis", norm=None,
             diverging: bool = False, marks=None):
    """Draw ``data`` (slopes × axis values) on ``ax`` as an annotated heat map with a colour bar.

    The phase-diagram layout: rows are the slopes ``rows``, columns the axis
    values ``cols`` (most noisy first).  Each finite cell shows its value,
    followed by ``marks[i][j]`` when given; the text is light on dark cells
    (far from the centre of a ``diverging`` map).
    """
    image = ax.imshow(data, cmap=cmap, norm=norm, aspect="auto")
    for (i, j), x in np.ndenumerate(data):
        if np.isfinite(x):
            level = float(image.norm(x))
            dark = abs(level - 0.5) > 0.35 if diverging else level < 0.4
            mark = "" if marks is None else marks[i][j]
            ax.text(j, i, f"{x:.2g}{mark}", ha="center", va="center", fontsize=6,
                    color="white" if dark else "black")
    ax.set_xticks(range(len(cols)), [_fmt(v) if axis == "batch_size" else f"{v:g}" for v in cols],
                  rotation=45)
    ax.set_yticks(range(len(rows)), [f"{s:g}" for s in rows])
    ax.set_xlabel(f"{AXIS_LABELS.get(axis, axis)}  (noise decreases →)")
    ax.set_ylabel("LeakyReLU slope α")
    ax.figure.colorbar(image, ax=ax, label=label)
    return image


def curvature_map(table: pd.DataFrame, *, axis: "str | None" = None, value: str = "c",
                  title: "str | None" = None):
    """Heat map of the seed-mean ``value`` (default the curvature c) over the grid.

    Red (c < 0) is concave, blue (c > 0) convex, white linear; each cell is
    annotated with its value.  ``value`` may be any numeric column
    (``c_rel``, ``v``, ``test_acc``, ...).
    """
    axis = _check_table(table, axis)
    if value not in table.columns:
        raise ValueError(f"`value` {value!r} is not a column; columns are {list(table.columns)}")
    if pd.to_numeric(table[value], errors="coerce").isna().all():  # regime, dataset, ...
        numeric = [c for c in table.columns if pd.api.types.is_float_dtype(table[c])][:8]
        raise ValueError(f"`value` must be a numeric column such as {', '.join(numeric)}, got {value!r}")
    ok = table[table["status"] == "ok"]
    grid = ok.pivot_table(index="slope", columns=axis, values=value, aggfunc="mean")
    grid = grid.reindex(index=sorted(table["slope"].unique()),
                        columns=axis_order(axis, table[axis].unique()))
    data = grid.to_numpy(dtype=float)
    diverging = value in ("c", "c_rel", "fit_slope")
    with figure_style():
        fig = _new_figure(_panel_size(*data.shape))
        ax = fig.subplots()
        label = {"c": "curvature c  (< 0 concave, > 0 convex)"}.get(value, value)
        heat_map(ax, data, list(grid.index), list(grid.columns), axis, label=label,
                 cmap="RdBu" if diverging else "viridis",
                 norm=CenteredNorm(0.0) if diverging else None, diverging=diverging)
        if title:
            ax.set_title(title)
    return fig


def _trajectory_arrays(trajectory):
    """``(epochs (T,), log_d (T, P))`` of one record's trajectory, or None."""
    if trajectory is None or len(trajectory) == 0:
        return None
    epochs = np.asarray([step["epoch"] for step in trajectory], dtype=float)
    curves = [np.asarray(step["log_d"], dtype=float) for step in trajectory]
    if len({c.size for c in curves}) != 1:
        return None
    return epochs, np.stack(curves)


def trajectory_grid(table: pd.DataFrame, *, axis: "str | None" = None, title: "str | None" = None):
    """log D of every layer against epoch, one small plot per phase-diagram cell.

    Uses the records' ``trajectory`` (train with ``curve_every > 0``); lines are
    seed means, coloured from the input (dark) to the last hidden layer
    (light); the logits point is left out.
    """
    axis = _check_table(table, axis)
    if "trajectory" not in table.columns:
        raise ValueError("no record carries a trajectory; train with `curve_every` > 0")
    runs = table[table["status"] == "ok"].copy()
    runs["_traj"] = runs["trajectory"].map(_trajectory_arrays)
    runs = runs[runs["_traj"].notna()]
    if not len(runs):
        raise ValueError("no record carries a trajectory; train with `curve_every` > 0")
    cells = _cells(table, axis)
    n_layers = runs["_traj"].iloc[0][1].shape[1] - 1
    with figure_style():
        fig = _new_figure(_panel_size(cells["slope"].nunique(), cells[axis].nunique()))
        axes, slopes, columns = _grid(fig, cells, axis)
        cmap = plt.get_cmap("viridis")
        for i, slope in enumerate(slopes):
            for j, value in enumerate(columns):
                here = runs[(runs["slope"] == slope) & (runs[axis] == value)]["_traj"].tolist()
                here = [t for t in here if t[1].shape[1] == n_layers + 1]
                if not here:
                    continue
                steps = min(t[0].size for t in here)  # early stops shorten some
                epochs = here[0][0][:steps]
                mean = np.mean([t[1][:steps] for t in here], axis=0)[:, :-1]
                for layer in range(mean.shape[1]):
                    axes[i, j].plot(epochs, mean[:, layer], lw=0.7,
                                    color=cmap(layer / max(1, n_layers - 1)))
        bar = fig.colorbar(ScalarMappable(Normalize(0, n_layers - 1), cmap), ax=axes,
                           shrink=0.9, aspect=30)
        bar.set_label("layer ℓ")
        if title:
            fig.suptitle(title, x=0.02, ha="left")
    return fig
