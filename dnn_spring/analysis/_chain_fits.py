"""Spring–block chains beside networks: the trajectory comparison figure.

The chain simulators (:mod:`dnn_spring.spring`) know nothing of networks;
this module sits above them and the run records (:mod:`dnn_spring.sweep._store`)
and puts the two side by side.

A run record has ``trajectory``: a list of ``{"epoch": e, "log_d": [...]}``
(empty unless the run was trained with ``curve_every > 0``).  Records are read
with :func:`dnn_spring.sweep._store.load_table` (a results folder, ``.parquet`` or
``.csv`` table) or from a single ``.json`` (one record or a list) or
``.jsonl`` file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dnn_spring._style import figure_style
from dnn_spring.sweep._store import load_table
from dnn_spring.spring.plots import depth_colors, plot_chain_trajectories

__all__ = ["load_trajectory_records", "pick_lazy_active", "plot_spring_trajectories", "fit_sweep",
           "cell_trajectory", "analogy_correlations", "plot_fit_maps", "FIT_COLUMNS"]


def _json_records(path: Path) -> list:
    text = path.read_text().strip()
    if not text:
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    return data if isinstance(data, list) else [data]


def _points(trajectory) -> list:
    """The trajectory as a list of ``{"epoch": int, "log_d": list of float}``."""
    if isinstance(trajectory, str):
        trajectory = json.loads(trajectory) if trajectory.strip() else []
    if trajectory is None or (isinstance(trajectory, float) and np.isnan(trajectory)):
        return []
    return [{"epoch": p["epoch"], "log_d": [float(v) for v in p["log_d"]]} for p in trajectory]


def load_trajectory_records(path) -> list:
    """Run records found at ``path`` that carry a non-empty trajectory.

    Parameters
    ----------
    path : str or Path
        A results folder, a ``.parquet``/``.csv`` table, or a ``.json`` /
        ``.jsonl`` file of records.

    Returns
    -------
    list of dict
        The records (every field kept) with ``trajectory`` normalised to a
        list of ``{"epoch", "log_d"}``; records without one are left out.

    Raises
    ------
    FileNotFoundError
        If nothing exists at ``path``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no results folder or file at {str(path)!r}")
    if path.is_file() and path.suffix in (".json", ".jsonl"):
        records = _json_records(path)
    else:
        records = load_table(path).to_dict("records")
    out = []
    for record in records:
        if not isinstance(record, dict) or "trajectory" not in record:
            continue
        points = _points(record["trajectory"])
        if points:
            out.append({**record, "trajectory": points})
    return out


def pick_lazy_active(records) -> list:
    """The most concave and the most convex record, lazy first.

    Ordered by ``c_rel`` (else ``c``); one record comes back alone; without
    curvature fields, the first two records.
    """
    records = list(records)
    if len(records) <= 1:
        return records
    for key in ("c_rel", "c"):
        values = [r.get(key) for r in records]
        if all(isinstance(v, (int, float)) and np.isfinite(v) for v in values):
            ordered = sorted(records, key=lambda r: float(r[key]))
            return [ordered[0], ordered[-1]]
    return records[:2]


def _draw_dnn(ax, record, title):
    traj = record["trajectory"]
    epochs = np.array([p["epoch"] for p in traj], dtype=float)
    log_d = np.array([p["log_d"] for p in traj], dtype=float)  # (n_epochs, n_points)
    # run records list the logits point last (docs/science.md#load-curve-and-shape); draw it apart
    n_hidden = log_d.shape[1] - 1
    colors = depth_colors(n_hidden)  # layer ℓ in the colour of the chain's block ℓ
    for ell in range(n_hidden):
        ax.plot(epochs, log_d[:, ell], color=colors[ell], lw=1.0, label=f"layer {ell}")
    ax.plot(epochs, log_d[:, -1], "--", color="0.6", lw=0.8, label="logits")
    ax.set_xlabel("epoch")
    ax.set_ylabel("log D_ℓ")
    ax.set_title(title)


def plot_spring_trajectories(lazy, active, dnn_records=None):
    """Block distance to target over time, lazy vs active, above a DNN's log D.

    Parameters
    ----------
    lazy, active : ChainResult
        A high-friction/low-noise chain and a noisy one.
    dnn_records : sequence of dict, optional
        Up to two run records (lazy first) with a non-empty ``trajectory``
        list of ``{"epoch": e, "log_d": [...]}`` (see
        :func:`load_trajectory_records` and :func:`pick_lazy_active`); drawn
        as a second row.  Without them the figure is
        :func:`dnn_spring.spring.plot_chain_trajectories`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    dnn_records = list(dnn_records or [])[:2]
    if not dnn_records:
        return plot_chain_trajectories(lazy, active)
    with figure_style():
        fig, axes = plt.subplots(2, 2, figsize=(9, 6.6))
        plot_chain_trajectories(lazy, active, axes=axes[0])
        for j, record in enumerate(dnn_records):
            slope, noise = record.get("slope"), record.get("noise")
            regime = record.get("regime", "?")
            _draw_dnn(axes[1, j], record, f"DNN: α={slope}, noise={noise} ({regime})")
        if len(dnn_records) == 1:
            axes[1, 1].set_visible(False)
        axes[1, 0].legend(fontsize=7, ncol=2)
        fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- chain fits of a sweep

#: Columns :func:`fit_sweep` adds per cell (``chain_noise`` is the chain's ε̄,
#: not the network's data noise ``noise``).
FIT_COLUMNS = ("chain_mu_right", "chain_asymmetry", "chain_noise", "fit_residual")


def cell_trajectory(runs) -> "tuple | None":
    """``(epochs, mean curves (T, L + 1))`` of a cell's ok runs, logits dropped.

    A run that stopped early keeps its last recorded curve for the later
    epochs (a stopped network no longer changes).  None when no ok run
    carries a trajectory of at least 2 curves.
    """
    trajectories = []
    for record in runs:
        if record.get("status") != "ok":
            continue
        points = [p for p in _points(record.get("trajectory"))
                  if p["log_d"] and all(np.isfinite(v) for v in p["log_d"])]
        if len(points) >= 2:
            trajectories.append({p["epoch"]: p["log_d"][:-1] for p in points})
    if not trajectories:
        return None
    lengths = {len(c) for t in trajectories for c in t.values()}
    if len(lengths) > 1:
        return None
    epochs = sorted({e for t in trajectories for e in t})
    stack = []
    for t in trajectories:
        last, filled = None, []
        for e in epochs:
            last = t.get(e, last)
            filled.append(last)
        if filled[0] is None:  # started later than the others: not comparable
            continue
        stack.append(filled)
    if not stack:
        return None
    return np.asarray(epochs, dtype=np.float64), np.asarray(stack, dtype=np.float64).mean(0)


def _falls(curves) -> bool:
    """Whether the separation gained since the first curve grows from input to last point."""
    gained = curves[-1] - curves[0]
    return bool(np.isfinite(gained).all() and gained[0] > gained[-1])


def fit_sweep(table, *, axis=None, order: int = 1, seed: int = 0, n_seeds: int = 4,
              asymmetry=None, progress: bool = False, trajectory: bool = False,
              scale="sweep"):
    """Fit a chain to the mean load curve (or trajectory) of every cell of a collected sweep.

    Parameters
    ----------
    table : pandas.DataFrame
        A :func:`~dnn_spring.sweep._store.collect` table (one noise axis).
    axis : str, optional
        The noise axis (default: the column that varies).
    order, seed, n_seeds, asymmetry
        See :func:`~dnn_spring.spring.fit_spring_block`.
    progress : bool, default=False
        A tqdm bar over cells.
    trajectory : bool, default=False
        Fit each cell's seed-mean trajectory (runs trained with
        ``curve_every > 0``) with
        :func:`~dnn_spring.spring.fit_spring_block_trajectory` instead of its
        final curve.
    scale : "sweep", "fit" or float, default="sweep"
        With ``trajectory``: one clock for the whole sweep
        (:func:`~dnn_spring.spring.sweep_scale`), a clock per cell ("fit"), or
        this value.

    Returns
    -------
    pandas.DataFrame, one row per cell
        ``slope``, the axis, ``n`` (runs averaged), ``test_acc``, ``regime``
        of the mean curve, then :data:`FIT_COLUMNS` and each parameter's
        ``*_low``, ``*_high`` and ``*_identified`` (a cell whose curve cannot
        be fitted has NaN there).  With ``trajectory`` also ``chain_scale``,
        ``fit_final_residual`` and the ``scale_*`` columns.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from dnn_spring.analysis._phase_plots import cell_table, infer_axis
    from dnn_spring.spring.fit import PARAMETERS, fit_spring_block
    from dnn_spring.spring.fit_trajectory import fit_spring_block_trajectory, sweep_scale

    axis = infer_axis(table) if axis is None else axis
    cells = cell_table(table, axis=axis)
    paths = {}
    if trajectory:
        for (slope, value), runs in table.groupby(["slope", axis], sort=False):
            paths[(slope, value)] = cell_trajectory(runs.to_dict("records"))
        usable = [p for p in paths.values() if p is not None and _falls(p[1])]
        if not usable:
            raise ValueError("no cell has a trajectory to fit: train the sweep with "
                             "`--set curve_every=K` (K > 0)")
        if scale == "sweep":
            scale = sweep_scale(usable, order=order, seed=seed, n_seeds=n_seeds,
                                asymmetry=asymmetry)[0]
    names = (*PARAMETERS, "scale") if trajectory else PARAMETERS
    rows = []
    for _, cell in tqdm(cells.iterrows(), total=len(cells), disable=not progress, desc="fit"):
        row = {"slope": cell["slope"], axis: cell[axis], "n": cell["n"],
               "test_acc": cell["test_acc"], "regime": cell["regime"],
               **dict.fromkeys(FIT_COLUMNS, np.nan)}
        try:
            if trajectory:
                path = paths.get((cell["slope"], cell[axis]))
                if path is None:
                    raise ValueError("no trajectory")
                fit = fit_spring_block_trajectory(path[1], times=path[0], order=order,
                                                  seed=seed, n_seeds=n_seeds,
                                                  asymmetry=asymmetry, scale=scale)
                row.update(chain_scale=fit.scale, fit_final_residual=fit.final_residual)
            else:
                fit = fit_spring_block(np.asarray(cell["curve"], dtype=float), order=order,
                                       seed=seed, n_seeds=n_seeds, asymmetry=asymmetry)
        except (ValueError, TypeError):  # no ok run, or a curve without a shape
            rows.append(row)
            continue
        row.update(chain_mu_right=fit.mu_right, chain_asymmetry=fit.asymmetry,
                   chain_noise=fit.noise, fit_residual=fit.residual)
        for name in names:
            row[f"{name}_low"], row[f"{name}_high"] = fit.uncertainty[name]
            row[f"{name}_identified"] = fit.identified[name]
        rows.append(row)
    return pd.DataFrame(rows)


def analogy_correlations(fits, axis: str, *, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Spearman rank correlations that test the analogy on :func:`fit_sweep` output.

    ``friction``: fitted μ→ against the nonlinearity 1 − α; ``shaking``:
    fitted chain noise against the network's noise (the axis value; for
    ``batch_size`` its inverse, as a smaller batch is noisier).  Each is
    ``{"rho", "p", "n", "low", "high", "identified"}``: ``low``–``high`` is
    the 95 % percentile bootstrap interval of rho over cells (``n_resamples``
    resamples of the cells, seeded; a resample whose x or y is constant has
    no rho and is left out), ``identified`` the share of
    fitted cells whose parameter is identified.  The analogy predicts
    rho > 0.  Every fitted cell counts, identified or not.
    """
    from scipy.stats import spearmanr

    ok = fits.dropna(subset=["chain_mu_right"])
    # a smaller batch is noisier; batch_size 0 is full batch, the least noisy
    noisiness = ok[axis].map(lambda b: 0.0 if b == 0 else 1.0 / b) if axis == "batch_size" \
        else ok[axis]
    out = {}
    for name, flag, x, y in (("friction", "mu_right", 1.0 - ok["slope"], ok["chain_mu_right"]),
                             ("shaking", "noise", noisiness, ok["chain_noise"])):
        known = ok.get(f"{flag}_identified")
        share = float(known.fillna(False).astype(bool).mean()) if known is not None and \
            len(ok) else float("nan")
        entry = {"rho": float("nan"), "p": float("nan"), "n": int(len(ok)),
                 "low": float("nan"), "high": float("nan"), "identified": share}
        if len(ok) >= 3 and x.nunique() >= 2 and y.nunique() >= 2:
            rho, p = spearmanr(x, y)
            entry.update(rho=float(rho), p=float(p))
            entry.update(zip(("low", "high"), _bootstrap_interval(
                x.to_numpy(float), y.to_numpy(float), n_resamples, seed)))
        out[name] = entry
    return out


def _bootstrap_interval(x, y, n_resamples: int, seed: int) -> tuple:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(seed)
    rhos = []
    for _ in range(int(n_resamples)):
        i = rng.integers(0, len(x), len(x))
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            rhos.append(spearmanr(x[i], y[i])[0])
    if not rhos:
        return float("nan"), float("nan")
    low, high = np.nanpercentile(rhos, [2.5, 97.5])
    return float(low), float(high)


def plot_fit_maps(fits, axis: str, *, title: "str | None" = None):
    """Fitted chain friction μ→ and noise ε̄ as two heat maps in the phase-diagram layout.

    A value the cell's curve does not pin down (``*_identified`` False) is
    printed with a trailing "?".
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from dnn_spring.analysis._phase_plots import axis_order, heat_map

    rows = sorted(fits["slope"].unique())
    cols = axis_order(axis, fits[axis].unique())
    with figure_style():
        fig, axes = plt.subplots(1, 2, figsize=(2.2 + 1.1 * len(cols), 0.9 + 0.55 * len(rows)),
                                 layout="constrained")
        for ax, column, flag, label in zip(
                axes, ("chain_mu_right", "chain_noise"), ("mu_right", "noise"),
                ("fitted friction μ→", "fitted chain noise ε̄")):
            grid = fits.pivot_table(index="slope", columns=axis, values=column, aggfunc="mean")
            data = grid.reindex(index=rows, columns=cols).to_numpy(dtype=float)
            flags = fits[f"{flag}_identified"] if f"{flag}_identified" in fits else None
            sure = fits.assign(ok=0.0 if flags is None else flags.fillna(False).astype(float))
            known = sure.pivot_table(index="slope", columns=axis, values="ok", aggfunc="min")
            known = known.reindex(index=rows, columns=cols).to_numpy(dtype=float)
            finite = data[np.isfinite(data) & (data > 0)]
            norm = LogNorm(finite.min(), finite.max()) if finite.size and \
                finite.min() < finite.max() else None
            heat_map(ax, data, rows, cols, axis, label=label, norm=norm,
                     marks=np.where(known == 1, "", "?"))
        if title:
            fig.suptitle(title)
    return fig
