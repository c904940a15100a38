"""The load curve as a generalization proxy, held to its baselines (docs/science.md#proxy-and-stress-map).

Over the runs of a collected sweep table, :func:`proxy_correlations` gives
Spearman's ρ between a **target** and each **statistic**, per panel (one
table) and pooled (``"all"``), with a bootstrap interval: the runs are
resampled with replacement ``n_boot`` times (seeded), and the interval is the
2.5 and 97.5 percentiles of ρ.  Only runs with status "ok" and finite values
count.

* Targets (:data:`TARGETS`): ``test_acc``, and ``gap``, the generalization
  gap ``train_acc − test_acc``, taken with its sign flipped (a small gap is
  good).
* Statistics, each signed (:data:`SIGNS`) so that a higher value should mean
  a better run, so a larger ρ is a better proxy:

  - the load curve's (:data:`STATISTICS`): ``abs_c`` = |c| (how far from the
    linear band), ``v`` (non-uniformity of the loads), ``fit_r2`` (how
    straight log D is against depth) and ``final_log_d`` (log D at the last
    hidden point);
  - the baselines (:data:`BASELINES`), which cost nothing extra:
    ``train_acc`` on the clean training labels, and ``train_loss``: on the
    clean labels in eval mode when the record has it (:func:`clean_final_loss`),
    else the record's ``train_loss``, the last
    epoch's mean loss on the labels and inputs the run trained on (noisy ones
    in a noise sweep, with dropout on);
  - WeightWatcher's ``ww_alpha`` and ``ww_alpha_weighted``
    (:data:`WEIGHTWATCHER`), when the table has them
    (:func:`dnn_spring.analysis._weightwatcher.add_weightwatcher`).

* ``partial``: the partial Spearman ρ of target and statistic **given the
  training accuracy**: Pearson's r of their ranks once the ranks of
  ``train_acc`` are regressed out, with its own bootstrap interval.  It says
  what a statistic tells about the target that training accuracy does not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata, spearmanr

from dnn_spring._style import figure_style

__all__ = ["clean_final_loss", "PROXIES", "STATISTICS", "BASELINES", "WEIGHTWATCHER", "TARGETS", "SIGNS", "LABELS",
           "proxy_table", "proxy_correlations", "correlation_text", "plot_proxies"]

STATISTICS = ("abs_c", "v", "fit_r2", "final_log_d")
#: The load-curve statistics (the name of 0.6.0).
PROXIES = STATISTICS
BASELINES = ("train_acc", "train_loss")
WEIGHTWATCHER = ("ww_alpha", "ww_alpha_weighted")
TARGETS = ("test_acc", "gap")
#: +1 when a higher value should mean a better run, −1 when a lower one should.
SIGNS = {"abs_c": -1, "v": -1, "fit_r2": 1, "final_log_d": -1, "train_acc": 1,
         "train_loss": -1, "ww_alpha": -1, "ww_alpha_weighted": -1, "test_acc": 1, "gap": -1}
LABELS = {"abs_c": "−|c|", "v": "−v", "fit_r2": "fit R²", "final_log_d": "−final log D",
          "train_acc": "train acc", "train_loss": "−train loss", "ww_alpha": "−WW α",
          "ww_alpha_weighted": "−WW α_w", "test_acc": "test accuracy",
          "gap": "−gap (test − train accuracy)"}


def final_hidden(curve) -> float:
    """log D at the last hidden point of a curve whose last point is the logits."""
    if curve is None or len(curve) < 2 or curve[-2] is None:
        return np.nan
    return float(curve[-2])


def clean_final_loss(runs: pd.DataFrame) -> pd.Series:
    """Each run's loss on the clean training labels (eval mode) at its end: the
    record's ``clean_train_loss`` (0.7.0 on), else its last trajectory entry when
    that is at ``epochs_run`` and has ``train_loss``, else NaN."""
    def one(trajectory, epochs_run):
        last = trajectory[-1] if trajectory is not None and len(trajectory) else None
        if last is None or last.get("train_loss") is None or last["epoch"] != epochs_run:
            return np.nan
        return float(last["train_loss"])

    out = pd.Series(np.nan, index=runs.index, dtype=float)
    if "trajectory" in runs.columns and "epochs_run" in runs.columns:
        out = pd.Series([one(t, e) for t, e in zip(runs["trajectory"], runs["epochs_run"])],
                        index=runs.index, dtype=float)
    if "clean_train_loss" in runs.columns:
        out = pd.to_numeric(runs["clean_train_loss"], errors="coerce").astype(float).fillna(out)
    return out


def proxy_table(table: pd.DataFrame) -> pd.DataFrame:
    """The ok runs of a collect table: the targets and every statistic, as floats (NaN when missing).

    Columns: :data:`TARGETS`, :data:`STATISTICS`, :data:`BASELINES`, and
    :data:`WEIGHTWATCHER` when ``table`` has them; the index is the table's.
    """
    missing = {"status", "test_acc", "c", "v", "fit_r2", "log_d"} - set(table.columns)
    if missing:
        raise ValueError(f"the table lacks columns {sorted(missing)}; is it a `collect` table?")
    runs = table[table["status"] == "ok"]
    num = lambda col: (pd.to_numeric(runs[col], errors="coerce") if col in runs.columns  # noqa: E731
                       else pd.Series(np.nan, index=runs.index))  # None or missing -> NaN
    clean = clean_final_loss(runs)
    out = pd.DataFrame({"test_acc": num("test_acc"), "gap": num("train_acc") - num("test_acc"),
                        "abs_c": num("c").abs(), "v": num("v"), "fit_r2": num("fit_r2"),
                        "final_log_d": runs["log_d"].map(final_hidden),
                        "train_acc": num("train_acc"),
                        "train_loss": clean.fillna(num("train_loss"))})
    out.attrs["clean_loss"] = int(clean.notna().sum())
    for name in WEIGHTWATCHER:
        if name in runs.columns:
            out[name] = num(name)
    out = out.astype(float)
    return out.where(np.isfinite(out))


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r along the last axis (NaN where either side is constant)."""
    x = x - x.mean(-1, keepdims=True)
    y = y - y.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x * y).sum(-1) / np.sqrt((x * x).sum(-1) * (y * y).sum(-1))


def _rank_stats(ranks: np.ndarray) -> tuple:
    """ρ(target, statistic) and ρ(target, statistic | control) from ranks (..., n, 3)."""
    t, s, z = ranks[..., 0], ranks[..., 1], ranks[..., 2]
    r_ts, r_tz, r_sz = _pearson(t, s), _pearson(t, z), _pearson(s, z)
    with np.errstate(invalid="ignore", divide="ignore"):
        partial = (r_ts - r_tz * r_sz) / np.sqrt((1 - r_tz ** 2) * (1 - r_sz ** 2))
    return r_ts, partial


def _interval(values: np.ndarray) -> tuple:
    values = values[np.isfinite(values)]
    return tuple(float(v) for v in np.percentile(values, [2.5, 97.5])) if len(values) else (np.nan, np.nan)


def _correlate(runs: pd.DataFrame, target: str, statistic: str, n_boot: int, rng) -> dict:
    control = runs["train_acc"] if runs["train_acc"].notna().any() else 0.0  # none: no partial ρ
    data = (runs[[target, statistic]].assign(control=control).dropna().to_numpy()
            * np.array([SIGNS[target], SIGNS[statistic], 1.0]))
    row = {"target": target, "proxy": statistic, "n": len(data), "rho": np.nan, "low": np.nan,
           "high": np.nan, "partial": np.nan, "partial_low": np.nan, "partial_high": np.nan}
    if len(data) < 4:
        return row
    if np.ptp(data[:, 0]) > 0 and np.ptp(data[:, 1]) > 0:
        row["rho"] = float(spearmanr(data[:, 0], data[:, 1]).statistic)
    own = statistic == "train_acc"  # given itself: nothing is left
    row["partial"] = np.nan if own else float(_rank_stats(rankdata(data, axis=0))[1])
    pick = rng.integers(0, len(data), (int(n_boot), len(data)))
    rho, partial = _rank_stats(rankdata(data[pick], axis=1))
    row["low"], row["high"] = _interval(rho)
    if not own:
        row["partial_low"], row["partial_high"] = _interval(partial)
    return row


def proxy_correlations(tables: dict, *, n_boot: int = 1000, seed: int = 0,
                       targets=TARGETS) -> pd.DataFrame:
    """Spearman ρ of each target with each signed statistic, per panel and pooled.

    Parameters
    ----------
    tables : dict of str to DataFrame
        Collect tables by panel name.
    n_boot : int, default=1000
        Bootstrap resamples of the runs.
    seed : int, default=0
        Seed of the resampling (``numpy.random.default_rng``).
    targets : sequence of str, default=TARGETS
        Which of ``"test_acc"`` and ``"gap"``.

    Returns
    -------
    DataFrame
        One row per (panel, target, statistic): ``panel``, ``target``,
        ``proxy`` (the statistic), ``kind`` (``"load curve"``, ``"baseline"``
        or ``"weightwatcher"``), ``n`` (runs), ``rho``, ``low``, ``high`` (the
        95 % bootstrap interval), ``partial``, ``partial_low`` and
        ``partial_high`` (given training accuracy; NaN for ``train_acc``
        itself).  ρ is of the *signed* statistic and target (:data:`SIGNS`).
        ``attrs["clean_loss"]`` and ``attrs["ok_runs"]``: per panel, the ok
        runs whose ``train_loss`` is the clean-label one
        (:func:`clean_final_loss`), and all ok runs.
    """
    if not tables:
        raise ValueError("no table given")
    if int(n_boot) < 10:
        raise ValueError(f"`n_boot` must be >= 10, got {n_boot!r}")
    if "all" in tables:
        raise ValueError("a panel may not be called 'all': that name is the pooled runs")
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        raise ValueError(f"unknown target(s) {unknown}; choose from {list(TARGETS)}")
    from dnn_spring.analysis._phase_plots import warn_mixed

    panels = {name: proxy_table(t) for name, t in tables.items()}  # checks the columns
    ok = {name: t[t["status"] == "ok"] for name, t in tables.items()}
    for name, table in ok.items():
        warn_mixed(table, "its ρ pools them", f"panel {name!r}")
    if len(ok) > 1:
        warn_mixed(pd.concat(ok.values(), ignore_index=True), "its ρ pools them", "panel 'all'")
    if len(panels) > 1:
        panels["all"] = pd.concat(panels.values(), ignore_index=True)
    statistics = STATISTICS + BASELINES + tuple(
        w for w in WEIGHTWATCHER if any(w in p.columns and p[w].notna().any() for p in panels.values()))
    rows = []
    rng = np.random.default_rng(int(seed))
    for name, runs in panels.items():
        for target in targets:
            for statistic in statistics:
                if statistic not in runs.columns:
                    runs = runs.assign(**{statistic: np.nan})
                rows.append({"panel": name, **_correlate(runs, target, statistic, n_boot, rng)})
    out = pd.DataFrame(rows)
    kinds = {**dict.fromkeys(STATISTICS, "load curve"), **dict.fromkeys(BASELINES, "baseline"),
             **dict.fromkeys(WEIGHTWATCHER, "weightwatcher")}
    out.insert(3, "kind", out["proxy"].map(kinds))
    out.attrs["clean_loss"] = {name: runs.attrs["clean_loss"] for name, runs in panels.items()
                               if name != "all"}
    out.attrs["ok_runs"] = {name: len(runs) for name, runs in panels.items() if name != "all"}
    return out


def correlation_text(result: pd.DataFrame) -> str:
    """The printed form of :func:`proxy_correlations`: per target, ρ and the partial ρ by panel."""
    blocks = []
    order = list(dict.fromkeys(result["proxy"]))
    panels = list(dict.fromkeys(result["panel"]))
    for target in dict.fromkeys(result["target"]):
        part = result[result["target"] == target]
        for value, title in (("rho", "Spearman ρ"),
                             ("partial", "partial Spearman ρ given training accuracy")):
            grid = part.pivot(index="panel", columns="proxy", values=value).reindex(
                index=panels, columns=order)
            if value == "partial":
                grid = grid.drop(columns=["train_acc"], errors="ignore")
            grid.columns = [LABELS.get(c, c) for c in grid.columns]
            blocks.append(f"{title} with {LABELS[target]} (statistics signed: higher should "
                          f"mean better)\n{grid.to_string(float_format=lambda v: f'{v:+.2f}')}")
        shown = part.assign(
            statistic=part["proxy"].map(lambda c: LABELS.get(c, c)),
            ci=[f"[{lo:+.2f}, {hi:+.2f}]" for lo, hi in zip(part["low"], part["high"])],
            partial_ci=[f"[{lo:+.2f}, {hi:+.2f}]" for lo, hi in
                        zip(part["partial_low"], part["partial_high"])])
        blocks.append(f"Spearman ρ with {LABELS[target]}, 95 % bootstrap intervals over runs\n"
                      + shown[["panel", "statistic", "n", "rho", "ci", "partial", "partial_ci"]]
                      .to_string(index=False, float_format=lambda v: f"{v:+.2f}"))
    return "\n\n".join(blocks)


def plot_proxies(tables: dict, correlations: "pd.DataFrame | None" = None):
    """Scatter plots of test accuracy against each statistic and baseline: one row per panel."""
    import matplotlib.pyplot as plt

    panels = {name: proxy_table(t) for name, t in tables.items()}
    shown = STATISTICS + BASELINES + tuple(
        w for w in WEIGHTWATCHER if any(w in p.columns and p[w].notna().any() for p in panels.values()))
    raw = {"abs_c": "|c|", "v": "v", "fit_r2": "fit R²", "final_log_d": "final log D",
           "train_acc": "train acc", "train_loss": "train loss", "ww_alpha": "WW α",
           "ww_alpha_weighted": "WW α_w"}
    with figure_style():
        fig, axes = plt.subplots(len(panels), len(shown), squeeze=False, layout="constrained",
                                 figsize=(2.2 * len(shown), 2.0 * len(panels)))
        for i, (name, runs) in enumerate(panels.items()):
            for j, proxy in enumerate(shown):
                ax = axes[i, j]
                if proxy in runs.columns:
                    ax.scatter(runs[proxy], 100 * runs["test_acc"], s=6, alpha=0.6)
                if correlations is not None:
                    row = correlations[(correlations["panel"] == name) & (correlations["proxy"] == proxy)
                                       & (correlations.get("target", "test_acc") == "test_acc")]
                    if len(row):
                        r = row.iloc[0]
                        ax.set_title(f"ρ({LABELS[proxy]}) = {r['rho']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}]",
                                     fontsize=7)
                if i == len(panels) - 1:
                    ax.set_xlabel(raw[proxy])
                if j == 0:
                    ax.set_ylabel(f"{name}\ntest acc (%)")
    return fig
