"""The load curve as a generalization proxy: rank correlations over a sweep (docs/science.md#proxy-and-stress-map).

Over the runs of a collected sweep table, :func:`proxy_correlations` gives
Spearman's ρ between the test accuracy and each of the curve's statistics,
with a bootstrap interval: resample the runs with replacement ``n_boot``
times (seeded), take the 2.5 and 97.5 percentiles of ρ.  Each table is one
panel; ``"all"`` pools the runs of every panel.  Only runs with status "ok"
and finite values count.

The statistics (:data:`PROXIES`): ``abs_c`` = |c| (how far from the linear
band), ``v`` (non-uniformity of the loads), ``fit_r2`` (how straight log D
is against depth) and ``final_log_d`` (log D at the last hidden point, the
logits left out).  None needs a test set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from dnn_spring._style import figure_style

__all__ = ["PROXIES", "proxy_table", "proxy_correlations", "plot_proxies"]

PROXIES = ("abs_c", "v", "fit_r2", "final_log_d")
_LABELS = {"abs_c": "|c|", "v": "v", "fit_r2": "fit R²", "final_log_d": "final log D"}


def proxy_table(table: pd.DataFrame) -> pd.DataFrame:
    """The ok runs of a collect table with ``test_acc`` and the :data:`PROXIES` columns."""
    missing = {"status", "test_acc", "c", "v", "fit_r2", "log_d"} - set(table.columns)
    if missing:
        raise ValueError(f"the table lacks columns {sorted(missing)}; is it a `collect` table?")
    runs = table[table["status"] == "ok"]
    final = runs["log_d"].map(lambda c: float(c[-2]) if c is not None and len(c) >= 2
                              and c[-2] is not None else np.nan)
    num = lambda col: pd.to_numeric(runs[col], errors="coerce")  # noqa: E731 - None -> NaN
    out = pd.DataFrame({"test_acc": num("test_acc"), "abs_c": num("c").abs(), "v": num("v"),
                        "fit_r2": num("fit_r2"), "final_log_d": final}).astype(float)
    return out.where(np.isfinite(out))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return np.nan
    return float(spearmanr(a, b).statistic)


def proxy_correlations(tables: dict, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Spearman ρ of test accuracy against each proxy, per panel and pooled.

    Parameters
    ----------
    tables : dict of str to DataFrame
        Collect tables by panel name.
    n_boot : int, default=1000
        Bootstrap resamples of the runs.
    seed : int, default=0
        Seed of the resampling (``numpy.random.default_rng``).

    Returns
    -------
    DataFrame
        One row per (panel, proxy): ``panel``, ``proxy``, ``n`` (runs),
        ``rho``, ``low``, ``high`` (the 95 % bootstrap interval).
    """
    if not tables:
        raise ValueError("no table given")
    if int(n_boot) < 10:
        raise ValueError(f"`n_boot` must be >= 10, got {n_boot!r}")
    if "all" in tables:
        raise ValueError("a panel may not be called 'all': that name is the pooled runs")
    from dnn_spring.analysis._phase_plots import warn_mixed

    panels = {name: proxy_table(t) for name, t in tables.items()}  # checks the columns
    ok = {name: t[t["status"] == "ok"] for name, t in tables.items()}
    for name, table in ok.items():
        warn_mixed(table, "its ρ pools them", f"panel {name!r}")
    if len(ok) > 1:
        warn_mixed(pd.concat(ok.values(), ignore_index=True), "its ρ pools them", "panel 'all'")
    if len(panels) > 1:
        panels["all"] = pd.concat(panels.values(), ignore_index=True)
    rows = []
    rng = np.random.default_rng(int(seed))
    for name, runs in panels.items():
        for proxy in PROXIES:
            pair = runs[["test_acc", proxy]].dropna().to_numpy()
            rho, boots = _spearman(pair[:, 0], pair[:, 1]), []
            for _ in range(int(n_boot) if len(pair) >= 3 else 0):
                pick = pair[rng.integers(0, len(pair), len(pair))]
                boots.append(_spearman(pick[:, 0], pick[:, 1]))
            boots = np.asarray(boots, dtype=float)
            boots = boots[np.isfinite(boots)]
            low, high = (np.percentile(boots, [2.5, 97.5]) if len(boots) else (np.nan, np.nan))
            rows.append({"panel": name, "proxy": proxy, "n": len(pair), "rho": rho,
                         "low": float(low), "high": float(high)})
    return pd.DataFrame(rows)


def plot_proxies(tables: dict, correlations: "pd.DataFrame | None" = None):
    """Scatter plots of test accuracy against each proxy: one row per panel."""
    import matplotlib.pyplot as plt

    panels = {name: proxy_table(t) for name, t in tables.items()}
    with figure_style():
        fig, axes = plt.subplots(len(panels), len(PROXIES), squeeze=False, layout="constrained",
                                 figsize=(2.4 * len(PROXIES), 2.0 * len(panels)))
        for i, (name, runs) in enumerate(panels.items()):
            for j, proxy in enumerate(PROXIES):
                ax = axes[i, j]
                ax.scatter(runs[proxy], 100 * runs["test_acc"], s=6, alpha=0.6)
                if correlations is not None:
                    row = correlations[(correlations["panel"] == name) & (correlations["proxy"] == proxy)]
                    if len(row):
                        r = row.iloc[0]
                        ax.set_title(f"ρ = {r['rho']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}]", fontsize=7)
                if i == len(panels) - 1:
                    ax.set_xlabel(_LABELS[proxy])
                if j == 0:
                    ax.set_ylabel(f"{name}\ntest acc (%)")
    return fig
