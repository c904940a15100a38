"""Spring–block chains beside networks: the trajectory comparison figure.

The chain simulators (:mod:`dnn_spring.spring`) know nothing of networks;
this module sits above them and the run records (:mod:`dnn_spring.records`)
and puts the two side by side.

A run record has ``trajectory``: a list of ``{"epoch": e, "log_d": [...]}``
(empty unless the run was trained with ``curve_every > 0``).  Records are read
with :func:`dnn_spring.records.load_table` (a results folder, ``.parquet`` or
``.csv`` table) or from a single ``.json`` (one record or a list) or
``.jsonl`` file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dnn_spring._style import figure_style
from dnn_spring.records import load_table
from dnn_spring.spring.plots import depth_colors, plot_chain_trajectories

__all__ = ["load_trajectory_records", "pick_lazy_active", "plot_spring_trajectories"]


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
    # run records list the logits point last (SPEC §3); draw it apart
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
