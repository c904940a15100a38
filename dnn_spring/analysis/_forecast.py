"""An early forecast of final test accuracy from a sweep's trajectories (docs/science.md#proxy-and-stress-map).

A run trained with ``curve_every`` (``dnn-spring sweep --trajectory N``) keeps, every
``curve_every`` epochs, its load curve with ``train_acc`` and ``train_loss`` on the
clean training set (records before 0.7.0 lack these two; their baselines come out NaN).  At a fraction ``f`` of training, :func:`forecast` takes
each run's last entry at or before epoch ``f · epochs`` (a run that stopped
earlier keeps its last one), computes the load-curve statistics of that curve,
and gives, per panel and pooled:

* Spearman's ρ of each signed statistic (:data:`~dnn_spring.analysis._proxy.SIGNS`)
  at that epoch with the **final** test accuracy, with a bootstrap interval,
  beside the same for training accuracy and training loss at that epoch;
* how often the statistic's top ``k`` runs of one sweep (a panel at one seed)
  hold the run with the best final test accuracy (``hits`` of ``sweeps``), and
  ``regret``: the final test accuracy given up, in points, by picking the
  statistic's top run instead of the best one, averaged over the sweeps.

No test set is used before the end: this is choosing a sweep's good runs early.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dnn_spring._style import figure_style
from dnn_spring.analysis._proxy import BASELINES, LABELS, SIGNS, STATISTICS, _correlate, final_hidden

__all__ = ["FRACTIONS", "FORECAST_STATISTICS", "trajectory_statistics", "forecast_fractions",
           "forecast", "forecast_text", "plot_forecast"]

FRACTIONS = (0.1, 0.25, 0.5)
FORECAST_STATISTICS = STATISTICS + BASELINES


def _shape(curve) -> dict:
    from dnn_spring.metrics._shape import load_shape

    values = [np.nan if v is None else float(v) for v in curve]
    try:
        shape = load_shape(values, logits=len(values) - 1)
    except ValueError:  # a NaN point or a collapsed layer
        return {"abs_c": np.nan, "v": np.nan, "fit_r2": np.nan}
    return {"abs_c": abs(shape.c), "v": shape.v, "fit_r2": shape.r2}


def _entry(trajectory, epoch: float):
    """The last entry at or before ``epoch`` (None when there is none)."""
    best = None
    for step in trajectory or []:
        if step["epoch"] <= epoch + 1e-9 and (best is None or step["epoch"] > best["epoch"]):
            best = step
    return best


def trajectory_statistics(table: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Per ok run with a trajectory: the statistics at ``fraction`` of its training.

    Columns: ``seed``, ``epoch`` (of the entry used), ``test_acc`` (final),
    :data:`FORECAST_STATISTICS` (``train_acc`` and ``train_loss`` NaN when the
    entries do not carry them).
    """
    if not 0 <= float(fraction) <= 1:
        raise ValueError(f"a fraction of training must be in [0, 1], got {fraction!r}")
    if "trajectory" not in table.columns:
        raise ValueError("the table has no `trajectory` column: run the sweep with --trajectory N")
    rows = []
    for _, run in table[table["status"] == "ok"].iterrows():
        step = _entry(run["trajectory"], float(fraction) * float(run["epochs"]))
        if step is None:
            continue
        num = lambda k: np.nan if step.get(k) is None else float(step[k])  # noqa: E731
        rows.append({"seed": run["seed"], "epoch": step["epoch"], "test_acc": float(run["test_acc"]),
                     **_shape(step["log_d"]), "final_log_d": final_hidden(step["log_d"]),
                     "train_acc": num("train_acc"), "train_loss": num("train_loss")})
    columns = ["seed", "epoch", "test_acc", *FORECAST_STATISTICS]
    out = pd.DataFrame(rows, columns=columns)
    out[columns[2:]] = out[columns[2:]].astype(float)
    out[columns[2:]] = out[columns[2:]].where(np.isfinite(out[columns[2:]]))
    return out


def forecast_fractions(tables: dict) -> list:
    """Every fraction of training at which the tables' runs recorded a curve."""
    out = set()
    for table in tables.values():
        ok = table[table["status"] == "ok"]
        for trajectory, epochs in zip(ok.get("trajectory", []), ok["epochs"]):
            out.update(round(step["epoch"] / epochs, 4) for step in trajectory or [])
    return sorted(out)


def _top_k(runs: pd.DataFrame, statistic: str, k: int) -> tuple:
    """(hits, sweeps, mean regret in points) over the seeds of ``runs``."""
    hits = sweeps = 0
    regret = []
    for _, sweep in runs.groupby("seed"):
        sweep = sweep[["test_acc", statistic]].dropna()
        if len(sweep) < 2:
            continue
        ranked = sweep.sort_values(statistic, ascending=SIGNS[statistic] < 0, kind="stable")
        best = sweep["test_acc"].max()
        sweeps += 1
        hits += int((ranked["test_acc"].iloc[:k] == best).any())
        regret.append(100 * (best - ranked["test_acc"].iloc[0]))
    return hits, sweeps, (float(np.mean(regret)) if regret else np.nan)


def forecast(tables: dict, fractions=FRACTIONS, *, k: int = 3, n_boot: int = 1000,
             seed: int = 0) -> pd.DataFrame:
    """How well each statistic at a fraction of training ranks the runs by final test accuracy.

    Parameters
    ----------
    tables : dict of str to DataFrame
        Collect tables with trajectories, by panel name.
    fractions : sequence of float, default=FRACTIONS
        Fractions of each run's ``epochs``.
    k : int, default=3
        Size of the top set of one sweep.
    n_boot : int, default=1000
        Bootstrap resamples of the runs.
    seed : int, default=0
        Seed of the resampling.

    Returns
    -------
    DataFrame
        One row per (panel, fraction, statistic): ``panel``, ``fraction``,
        ``proxy``, ``n``, ``rho``, ``low``, ``high``, ``partial``,
        ``partial_low``, ``partial_high`` (given training accuracy at that
        epoch), ``hits``, ``sweeps`` and ``regret``.
    """
    if not tables:
        raise ValueError("no table given")
    if int(k) < 1:
        raise ValueError(f"`k` must be >= 1, got {k!r}")
    if int(n_boot) < 10:
        raise ValueError(f"`n_boot` must be >= 10, got {n_boot!r}")
    if "all" in tables:
        raise ValueError("a panel may not be called 'all': that name is the pooled runs")
    rng = np.random.default_rng(int(seed))
    rows = []
    for fraction in fractions:
        panels = {name: trajectory_statistics(t, fraction) for name, t in tables.items()}
        if not any(len(p) for p in panels.values()):
            raise ValueError("no ok run has a trajectory: run the sweep with --trajectory N")
        if len(panels) > 1:
            panels["all"] = pd.concat(
                [p.assign(seed=[f"{name}/{s}" for s in p["seed"]]) for name, p in panels.items()],
                ignore_index=True)
        for name, runs in panels.items():
            for statistic in FORECAST_STATISTICS:
                row = _correlate(runs, "test_acc", statistic, n_boot, rng)
                hits, sweeps, regret = _top_k(runs, statistic, int(k))
                rows.append({"panel": name, "fraction": float(fraction),
                             **{c: v for c, v in row.items() if c != "target"},
                             "hits": hits, "sweeps": sweeps, "regret": regret})
    return pd.DataFrame(rows)


def forecast_text(result: pd.DataFrame, *, k: int = 3) -> str:
    """The printed form of :func:`forecast`: ρ by statistic and fraction, then top-k hits."""
    blocks = []
    for name, part in result.groupby("panel", sort=False):
        grid = part.assign(
            cell=[f"{r:+.2f} [{lo:+.2f}, {hi:+.2f}]" for r, lo, hi in
                  zip(part["rho"], part["low"], part["high"])],
            top=[f"{h}/{s}, {g:.1f}" for h, s, g in zip(part["hits"], part["sweeps"], part["regret"])])
        rho = grid.pivot(index="proxy", columns="fraction", values="cell").reindex(
            list(dict.fromkeys(part["proxy"])))
        top = grid.pivot(index="proxy", columns="fraction", values="top").reindex(rho.index)
        for frame in (rho, top):
            frame.index = [LABELS.get(i, i) for i in frame.index]
            frame.columns = [f"{100 * f:g} %" for f in frame.columns]
        blocks.append(f"{name}: Spearman ρ of the statistic at a fraction of training with the "
                      f"final test accuracy [95 % bootstrap interval]\n{rho.to_string()}")
        blocks.append(f"{name}: sweeps whose best final run is in the statistic's top {k}, and "
                      f"the mean final test accuracy lost by taking its top run (points)\n"
                      f"{top.to_string()}")
    return "\n\n".join(blocks)


def plot_forecast(result: pd.DataFrame):
    """Forecast quality (ρ with final test accuracy) against the fraction of training:
    one axis per panel, one line per statistic and baseline (baselines dashed)."""
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(result["panel"]))
    with figure_style():
        fig, axes = plt.subplots(1, len(panels), squeeze=False, sharey=True, layout="constrained",
                                 figsize=(2.8 * len(panels) + 1.6, 2.8))
        for ax, name in zip(axes[0], panels):
            part = result[result["panel"] == name]
            for statistic in dict.fromkeys(part["proxy"]):
                line = part[part["proxy"] == statistic].sort_values("fraction")
                style = "--" if statistic in BASELINES else "-"
                (drawn,) = ax.plot(100 * line["fraction"], line["rho"], style, marker=".", lw=1.2,
                                   label=LABELS.get(statistic, statistic))
                ax.fill_between(100 * line["fraction"], line["low"], line["high"], alpha=0.12,
                                color=drawn.get_color(), lw=0)
            ax.axhline(0, color="0.6", lw=0.6)
            ax.set_title(name)
            ax.set_xlabel("training done (%)")
        axes[0, 0].set_ylabel("Spearman ρ with final test accuracy")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=7, loc="outside right center")
    return fig
