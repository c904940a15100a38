"""Figures of spring–block chains: one chain, the phase diagram, trajectories.

Only chains are drawn here; the figure that sets chains beside a network's
log D over epochs is :func:`dnn_spring.analysis._chain_fits.plot_spring_trajectories`.

Every function returns a :class:`matplotlib.figure.Figure` drawn inside
:func:`dnn_spring._style.figure_style`; none calls ``plt.show()``.
"""

from __future__ import annotations

import numpy as np

from dnn_spring._style import CURVE_COLOR, REGIME_COLORS, figure_style
from dnn_spring._checks import check_choice

__all__ = ["plot_chain", "plot_load_curves", "plot_spring_phase_diagram", "plot_chain_trajectories",
           "depth_colors", "SHADES"]

#: What the phase-diagram background shows.
SHADES = ("evenness", "curvature")


def depth_colors(n):
    """``n`` colours from shallow to deep (viridis), one per block or layer."""
    import matplotlib.pyplot as plt

    return plt.get_cmap("viridis")(np.linspace(0.0, 0.9, n))


def _draw_distance(ax, result, title):
    y = result.config.y
    colors = depth_colors(result.trajectory.shape[1])
    for ell in range(result.trajectory.shape[1]):
        ax.plot(result.times, y - result.trajectory[:, ell], color=colors[ell], lw=1.0,
                label=f"block {ell + 1}")
    ax.set_xlabel("time")
    ax.set_ylabel("distance to target  y − x_ℓ")
    ax.set_title(title)


def plot_chain(result, *, title=None):
    """Final load curve and block trajectories of one chain.

    Parameters
    ----------
    result : ChainResult
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Left: ``y − x_ℓ`` against ℓ with the straight line of equal loads;
        right: every block's distance to the target over time.
    """
    import matplotlib.pyplot as plt

    stats = result.stats
    with figure_style():
        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 3.4))
        depth = np.arange(result.curve.size)
        ax0.plot(depth, result.curve, "o-", color=REGIME_COLORS[stats.regime], label="chain")
        ax0.plot(depth[[0, -1]], result.curve[[0, -1]], "--", color="0.6", lw=0.8,
                 label="equal loads")
        ax0.set_xlabel("block ℓ (0 = wall)")
        ax0.set_ylabel("y − x_ℓ")
        ax0.set_title(f"{stats.regime}: c = {stats.c:+.3f}, v = {stats.v:.3f}")
        ax0.legend()
        _draw_distance(ax1, result, "trajectories")
        ax1.legend(fontsize=7, ncol=2)
        cfg = result.config
        fig.suptitle(title or f"order {cfg.order}: μ→={cfg.mu_right:g}, μ←={cfg.mu_left:g}, "
                     f"noise={cfg.noise:g}, seed={result.seed}, {result.backend}")
        fig.tight_layout()
    return fig


def _shade_mapping(table, shade):
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    if shade == "evenness":
        # light greys only, so the black curves stay readable; bright = even
        cmap = mcolors.ListedColormap(plt.get_cmap("Greys_r")(np.linspace(0.35, 1.0, 256)))
        values = table["evenness"].to_numpy()
        low = min(float(np.floor(np.nanmin(values) * 20) / 20), 0.95)  # data range, 0.05 steps
        return values, cmap, mcolors.Normalize(low, 1.0), "evenness of loads (1 = equal)"
    cmap = mcolors.ListedColormap(plt.get_cmap("RdBu")(np.linspace(0.15, 0.85, 256)))
    values = np.clip(table["c_rel"].to_numpy(), -2.0, 2.0)
    return values, cmap, mcolors.Normalize(-2.0, 2.0), "relative curvature c_rel (− concave, + convex)"


def _draw_cell(ax, cell, background) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(True)
        side.set_color("0.75")
    curve = np.asarray(cell.curve)
    ax.set_facecolor(background)
    ax.plot([0, curve.size - 1], curve[[0, -1]], "--", color="0.45", lw=0.6)
    ax.plot(np.arange(curve.size), curve, color=CURVE_COLOR, lw=1.2)
    ax.plot([0.04], [0.08], "s", ms=4, transform=ax.transAxes, color=REGIME_COLORS[cell.regime])


def plot_spring_phase_diagram(table, *, shade="evenness", title=None):
    """The spring–block phase diagram, laid out like the DNN one.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`~dnn_spring.spring.scan_phase_diagram`: one row per cell.
    shade : {"evenness", "curvature"}, default="evenness"
        Background: the evenness of the loads (grey, bright = even, the
        stand-in for test accuracy) or the relative curvature (red concave,
        blue convex).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Rows: friction μ→, high at the top; columns: noise, high on the left.
        Each cell: the seed-mean curve ``y − x_ℓ`` (black) over the straight
        line of equal loads (dashed); the regime's colour marks its corner.
    """
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable

    check_choice("shade", shade, SHADES)
    frictions = sorted(table["mu_right"].unique(), reverse=True)
    noises = sorted(table["noise"].unique(), reverse=True)
    values, cmap, norm, label = _shade_mapping(table, shade)
    lookup = {(r.mu_right, r.noise): (r, val) for r, val in zip(table.itertuples(), values)}
    with figure_style():
        fig, axes = plt.subplots(len(frictions), len(noises), squeeze=False,
                                 figsize=(1.15 * len(noises) + 1.6, 0.95 * len(frictions) + 1.0))
        for i, mu in enumerate(frictions):
            for j, eps in enumerate(noises):
                ax = axes[i, j]
                if (mu, eps) in lookup:
                    cell, val = lookup[(mu, eps)]
                    _draw_cell(ax, cell, cmap(norm(val)))
                if j == 0:
                    ax.set_ylabel(f"{mu:.2g}", rotation=0, ha="right", va="center")
                if i == 0:
                    ax.set_title(f"{eps:.2g}", fontsize=8)
        order = int(table["order"].iloc[0]) if "order" in table else 2
        delta = float((table["mu_left"] - table["mu_right"]).iloc[0])
        fig.supylabel(f"friction μ→  (μ← = μ→ + {delta:g})")
        fig.supxlabel("noise " + ("ε" if order == 2 else "ε̄") + "  (decreasing →)")
        fig.suptitle(title or f"spring–block phase diagram ({'Langevin' if order == 2 else 'first-order'}"
                     f" chain, {int(table['n_seeds'].iloc[0])} seeds per cell)")
        handles = [plt.Line2D([], [], ls="", marker="s", color=REGIME_COLORS[name], label=name)
                   for name in REGIME_COLORS]
        fig.legend(handles=handles, loc="upper right", ncol=3, fontsize=8)
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, fraction=0.03,
                     pad=0.02, label=label)
    return fig


def plot_chain_trajectories(lazy, active, *, axes=None):
    """Every block's distance to the target over time, a lazy chain beside an active one.

    Parameters
    ----------
    lazy, active : ChainResult
        A high-friction/low-noise chain and a noisy one.
    axes : sequence of two matplotlib Axes, optional
        Where to draw them (a row of a larger figure, as
        :func:`dnn_spring.analysis._chain_fits.plot_spring_trajectories` does); default a
        new figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure of ``axes`` or the new one.
    """
    import matplotlib.pyplot as plt

    own = axes is None
    if not own and len(axes) != 2:
        raise ValueError(f"`axes` must hold two Axes, got {len(axes)}")
    with figure_style():
        if own:
            fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
        fig = axes[0].figure
        for ax, result, name in zip(axes, (lazy, active), ("lazy", "active")):
            cfg = result.config
            _draw_distance(ax, result, f"chain, {name}: μ→={cfg.mu_right:g}, "
                                       f"noise={cfg.noise:g} ({result.stats.regime})")
        top = max(ax.get_ylim()[1] for ax in axes)
        for ax in axes:
            ax.set_ylim(top=top + 0.25 * (top - min(a.get_ylim()[0] for a in axes)))
        axes[1].legend(fontsize=7, ncol=4, loc="upper right")  # in the headroom
        if own:  # a caller's figure is laid out by the caller
            fig.tight_layout()
    return fig


def plot_load_curves(results, labels=None, *, title=None):
    """Final load curves ``y − x_ℓ`` of several chains on one axes.

    Parameters
    ----------
    results : sequence of ChainResult
    labels : sequence of str, optional
        One per result; default the friction and noise of each.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Each curve coloured by its regime, the equal-load line dashed.
    """
    import matplotlib.pyplot as plt

    results = list(results)
    if labels is None:
        labels = [f"μ→={r.config.mu_right:g}, μ←={r.config.mu_left:g}, noise={r.config.noise:g}"
                  for r in results]
    with figure_style():
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        styles = ["-", "--", "-.", ":"]
        for i, (res, label) in enumerate(zip(results, labels)):
            depth = np.arange(res.curve.size)
            ax.plot(depth, res.curve, styles[i % 4], marker="o", ms=3,
                    color=REGIME_COLORS[res.stats.regime], label=f"{label} ({res.stats.regime})")
        if results:
            n, y = results[0].curve.size - 1, results[0].config.y
            ax.plot([0, n], [y, y / (n + 1)], color="0.7", lw=0.8, zorder=0,
                    label="equal extensions y/(L+1)")
        ax.set_xlabel("block ℓ (0 = wall)")
        ax.set_ylabel("y − x_ℓ")
        ax.legend(fontsize=7)
        if title:
            ax.set_title(title)
        fig.tight_layout()
    return fig
