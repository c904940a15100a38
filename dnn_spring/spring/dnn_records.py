"""DNN run records with load-curve trajectories, for the chain-vs-network figure.

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

__all__ = ["load_trajectory_records", "pick_lazy_active"]


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
    from dnn_spring.records import load_table

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
