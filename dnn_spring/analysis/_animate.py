"""The folding ruler beside a training network: an animated GIF.

Left, the spring–block chain as it moves: blocks on a ruler from the wall
(x = 0) to the pulled end (x = y), joined by springs drawn as zig-zags whose
width shows their extension, the load each one carries.  Right, the load
curves at the same moment of their runs, each scaled so that its final
curve starts at 1 and ends at 0 (as :func:`~dnn_spring.spring.fit_spring_block`
compares them): the chain's distance to go ``y − x_ℓ`` and the network's
log D per layer (its logits point dropped), with the final curves drawn
faintly.  Frame
``i`` of ``n`` shows both runs at the same fraction of their length.

The chain is the one :func:`~dnn_spring.spring.fit_spring_block` fits to
the network's final curve, with symmetric friction (μ← = μ→), so the two
end alike and the friction and noise it took are in the title.  Two
settings mirror the paper's videos (:data:`SETTINGS`): *lazy*, a ReLU
network trained without noise, and *active*, a less nonlinear network
(α = 0.3) trained with data noise 0.4.  Written with matplotlib's Pillow
writer, so no ffmpeg is needed.

Both curves are scaled by their final ends, so a frame shows how far each
run is from its final shape: the chain starts with every block at the wall
(a flat line at 1), the network with its initial load curve.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnn_spring._checks import check_choice, check_range
from dnn_spring.train._config import RunConfig
from dnn_spring.spring import (FirstOrderConfig, chain_curve, fit_spring_block,
                               simulate_first_order)

__all__ = ["SETTINGS", "setting_config", "fitted_chain", "animate_chain_and_network"]

#: The network of each setting (flat run-config changes).
SETTINGS = {"lazy": {"slope": 0.0, "noise": 0.0}, "active": {"slope": 0.3, "noise": 0.4}}


def setting_config(setting: str, *, epochs: int = 100, seed: int = 0) -> RunConfig:
    """The run config of a setting: the paper's MLP on mnist5k, 25 trajectory points."""
    check_choice("setting", setting, SETTINGS)
    check_range("epochs", epochs, 1)
    return RunConfig().replace(dataset="mnist5k", depth=8, width=100, epochs=int(epochs),
                               curve_every=max(1, int(epochs) // 25), seed=int(seed),
                               **SETTINGS[setting])


def fitted_chain(record: dict, *, seed: int = 0, trajectory: bool = False) -> FirstOrderConfig:
    """The symmetric-friction chain fitted to ``record``'s final load curve.

    With ``trajectory``, the chain fitted to the record's whole trajectory
    (:func:`~dnn_spring.spring.fit_spring_block_trajectory`), run for the
    fitted share ``s`` of its horizon, so that its last step is the end of
    training and each frame shows chain and network at matching times.
    """
    fit = fit_spring_block(record, seed=seed, asymmetry=1.0, trajectory=trajectory)
    steps = {"n_steps": max(1, int(round(fit.scale * FirstOrderConfig.n_steps)))} \
        if trajectory else {}
    return FirstOrderConfig(n_blocks=fit.n_blocks, mu_right=fit.mu_right, mu_left=fit.mu_left,
                            noise=fit.noise, **steps)


def _scaled(curve, final) -> np.ndarray:
    """``curve`` mapped so that ``final`` starts at 1 and ends at 0."""
    span = final[0] - final[-1]
    return (np.asarray(curve, dtype=np.float64) - final[-1]) / span


def _network_frames(record: dict) -> tuple:
    """``(epochs, curves (T, L + 1))`` of a record's trajectory, logits dropped."""
    trajectory = record.get("trajectory") or []
    if not isinstance(trajectory, list) or not all(isinstance(p, dict) for p in trajectory):
        raise ValueError('`record` trajectory must be a list of {"epoch": ..., "log_d": [...]}')
    points = [(p.get("epoch"), p["log_d"][:-1]) for p in trajectory
              if p.get("log_d") and all(v is not None for v in p["log_d"])]
    if len(points) < 2:
        raise ValueError("`record` must carry a trajectory of at least 2 load curves "
                         "(train with curve_every > 0)")
    lengths = {len(c) for _, c in points}
    if len(lengths) > 1:
        raise ValueError(f"`record` trajectory curves differ in length: {sorted(lengths)}")
    return np.array([e for e, _ in points]), np.array([c for _, c in points], dtype=np.float64)


def _spring(ax, x0, x1, *, height=0.12, turns=6, **style):
    xs = np.linspace(x0, x1, 2 * turns + 3)
    ys = np.zeros_like(xs)
    ys[1:-1:2], ys[2:-1:2] = height, -height
    ys[1], ys[-2] = 0.0, 0.0
    return ax.plot(xs, ys, **style)[0]


def _draw_chain(ax, x, y, final_x, colors):
    ax.clear()
    ax.axhline(-0.45, color="0.6", lw=1)
    for tick in np.linspace(0, y, 11):
        ax.plot([tick, tick], [-0.45, -0.5], color="0.6", lw=0.8)
    ax.fill_betweenx([-0.4, 0.4], -0.05 * y, 0, color="0.75", hatch="///", lw=0)
    ends = np.concatenate([[0.0], x, [y]])
    for ell in range(len(ends) - 1):
        _spring(ax, ends[ell], ends[ell + 1], color="0.35", lw=1)
    ax.scatter(final_x, np.zeros_like(final_x), s=90, marker="s", facecolors="none",
               edgecolors="0.8", zorder=2)
    ax.scatter(x, np.zeros_like(x), s=90, marker="s", color=colors, zorder=3)
    ax.plot([y], [0], marker=">", color="black", ms=8)
    ax.set_xlim(-0.08 * y, 1.08 * y)
    ax.set_ylim(-0.6, 0.6)
    ax.set_yticks([])
    ax.set_xlabel("position on the ruler (wall at 0, pulled end at y)")


def animate_chain_and_network(chain, record: dict, out, *, frames: int = 50, fps: int = 10,
                              seed: int = 0, title: "str | None" = None) -> Path:
    """Write the GIF of ``chain`` (a FirstOrderConfig) beside ``record``'s trajectory.

    Parameters
    ----------
    chain : FirstOrderConfig
        Its ``n_blocks`` must be the record's points before the logits minus one.
    record : dict
        A run record with a ``trajectory`` (``curve_every > 0``).
    out : str or Path
        The ``.gif`` to write.
    frames, fps : int
        Number of frames and frames per second.
    seed : int
        The chain's noise seed.

    Returns
    -------
    Path
    """
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    from dnn_spring._style import figure_style
    from dnn_spring.spring.plots import depth_colors

    check_range("frames", frames, 2)
    check_range("fps", fps, 1)
    epochs, curves = _network_frames(record)
    if curves.shape[1] != chain.n_blocks + 1:
        raise ValueError(f"`chain` must have {curves.shape[1] - 1} blocks for this record, "
                         f"got n_blocks={chain.n_blocks}")
    result = simulate_first_order(chain, seed=seed,
                                  record_every=max(1, chain.n_steps // (4 * frames)))
    traj, y = result.trajectory, chain.y
    chain_curves = chain_curve(traj, y)
    chain_curves, curves = _scaled(chain_curves, chain_curves[-1]), _scaled(curves, curves[-1])
    low = min(-0.2, float(np.nanmin(curves)), float(np.nanmin(chain_curves)))
    high = max(1.2, float(np.nanmax(curves)), float(np.nanmax(chain_curves)))
    colors = depth_colors(chain.n_blocks)
    layers = np.arange(chain.n_blocks + 1)
    with figure_style():
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2),
                                          gridspec_kw={"width_ratios": [1.6, 1]},
                                          layout="constrained")

        def draw(i):
            share = i / (frames - 1)
            x = traj[int(round(share * (len(traj) - 1)))]
            j = int(round(share * (len(epochs) - 1)))
            _draw_chain(left, x, y, traj[-1], colors)
            left.set_title(f"chain: step {int(round(share * chain.n_steps))}", fontsize=9)
            right.clear()
            right.plot(layers, chain_curves[-1], color="C0", alpha=0.25, lw=3)
            right.plot(layers, curves[-1], color="C3", alpha=0.25, lw=3)
            k = int(round(share * (len(traj) - 1)))
            right.plot(layers, chain_curves[k], "o-", color="C0", ms=3, label="chain: y − x_ℓ")
            right.plot(layers, curves[j], "s-", color="C3", ms=3,
                       label=f"network: log D (epoch {int(epochs[j])})")
            right.set_ylim(low - 0.05, high + 0.05)
            right.set_xlabel("block ℓ / layer ℓ")
            right.set_ylabel("load curve (final ends at 1 and 0)")
            right.legend(fontsize=7, loc="upper right")
            if title:
                fig.suptitle(title, fontsize=10)

        animation = FuncAnimation(fig, draw, frames=frames)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        animation.save(out, writer=PillowWriter(fps=fps), dpi=72)
        plt.close(fig)
    return out
