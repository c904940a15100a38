"""Run records on disk: one JSON file per run, written atomically, and the table.

A sweep's results folder holds ``<key>.json`` per finished run, ``key`` being
``RunConfig.key()``.  A record is written to a temporary file in the same
folder and moved into place with ``os.replace``, so a killed job leaves either
the whole record or none.  A file that does not parse, is not a dict, or whose
``key`` does not match its name is *corrupt*: it is reported by name (one
warning line each), skipped by :func:`collect`, and rerun by the runner.

:func:`collect` turns a folder into a DataFrame with one row per run;
:func:`save_table` / :func:`load_table` store it as Parquet (list columns such
as ``log_d`` stay lists) or CSV (list columns become JSON strings).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "CorruptRecordError",
    "FINISHED_STATUSES",
    "record_path",
    "write_record",
    "read_record",
    "scan_records",
    "collect",
    "save_table",
    "load_table",
]

logger = logging.getLogger("dnn_spring.records")

#: Statuses of a run that is done for good; a "failed" run is retried.
FINISHED_STATUSES = ("ok", "diverged")
_STATUSES = ("ok", "diverged", "failed")
TABLE_SUFFIXES = (".parquet", ".csv")


class CorruptRecordError(ValueError):
    """A record file that cannot be used (truncated, not JSON, wrong key)."""


def record_path(out_dir, key: str) -> Path:
    """Path of the record of run ``key`` in ``out_dir``."""
    return Path(out_dir) / f"{key}.json"


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "tolist"):  # numpy arrays, torch tensors
        return obj.tolist()
    if isinstance(obj, (Path, set, tuple)):
        return list(obj) if not isinstance(obj, Path) else str(obj)
    return str(obj)


def write_record(record: dict, out_dir) -> Path:
    """Write ``record`` atomically to ``out_dir/<record['key']>.json``.

    Returns
    -------
    Path
        The record's path.
    """
    if not isinstance(record, dict) or not record.get("key"):
        raise ValueError("`record` must be a dict with a 'key', got " + repr(type(record).__name__))
    text = json.dumps(record, default=_json_default)
    path = record_path(out_dir, record["key"])
    write_atomically(path, lambda handle: handle.write(text.encode()))
    return path


def write_atomically(path, write) -> None:
    """Create ``path`` (and its folder) with ``write(binary_handle)``, all or nothing.

    The bytes go to a hidden temporary file beside ``path``, are synced, and
    the file is moved into place with ``os.replace``; a kill or an error
    leaves the old file (or none), never half a new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(path) -> dict:
    """Read and check one record file.

    Raises
    ------
    CorruptRecordError
        If the file is not a JSON object with a known ``status`` and a
        ``key`` equal to its file name.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptRecordError(f"{type(exc).__name__}: {exc}") from None
    if not isinstance(record, dict):
        raise CorruptRecordError(f"expected a JSON object, got {type(record).__name__}")
    if record.get("key") != path.stem:
        raise CorruptRecordError(f"its key {record.get('key')!r} does not match the file name")
    if record.get("status") not in _STATUSES:
        raise CorruptRecordError(f"`status` must be one of {set(_STATUSES)}, got {record.get('status')!r}")
    return record


def scan_records(out_dir, *, warn: bool = True) -> tuple:
    """Read every record in ``out_dir``.

    Returns
    -------
    records : dict
        ``{key: record}`` of the readable records.
    corrupt : list of (Path, str)
        Each corrupt file and why; each is logged as a warning when ``warn``.
    """
    out_dir = Path(out_dir)
    records, corrupt = {}, []
    if not out_dir.is_dir():
        return records, corrupt
    for path in sorted(out_dir.glob("*.json")):
        try:
            records[path.stem] = read_record(path)
        except CorruptRecordError as exc:
            corrupt.append((path, str(exc)))
            if warn:
                logger.warning("skipping corrupt record %s: %s", path, exc)
    return records, corrupt


def collect(results_dir, *, warn: bool = True) -> pd.DataFrame:
    """One row per run record in ``results_dir``; corrupt files are skipped.

    Returns
    -------
    DataFrame of shape (n_runs, n_fields)
        Every record field as a column (config fields, ``status``,
        ``test_acc``, ``log_d`` as lists, ...), sorted by ``slope`` and then
        the key.  Empty (no columns) when the folder has no records.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder {str(results_dir)!r} does not exist")
    records, _ = scan_records(results_dir, warn=warn)
    table = pd.DataFrame(list(records.values()))
    if len(table) and "slope" in table.columns:
        table = table.sort_values(["slope", "key"], kind="stable").reset_index(drop=True)
    return table


def _is_listlike(value) -> bool:
    return isinstance(value, (list, tuple, dict, np.ndarray))


def _list_columns(table: pd.DataFrame) -> list:
    return [
        name for name in table.columns
        if table[name].dtype == object and table[name].map(_is_listlike).any()
    ]


def _to_json_text(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return json.dumps(value, default=_json_default)


def save_table(table: pd.DataFrame, path) -> Path:
    """Write the collect table as ``.parquet`` (lists kept) or ``.csv`` (lists as JSON)."""
    path = Path(path)
    if path.suffix not in TABLE_SUFFIXES:
        raise ValueError(f"table file must end in one of {TABLE_SUFFIXES}, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    out = table.copy()
    if path.suffix == ".csv":
        for name in _list_columns(out):
            out[name] = out[name].map(_to_json_text)
        out.to_csv(path, index=False)
        return path
    try:
        out.to_parquet(path, index=False)
    except Exception:  # pyarrow cannot type a ragged column: store that one as JSON
        for name in _list_columns(out):
            if name not in ("log_d", "log_inv_d", "log_trace_ratio", "layers"):
                out[name] = out[name].map(_to_json_text)
        out.to_parquet(path, index=False)
    return path


def _from_json_text(value):
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def load_table(source) -> pd.DataFrame:
    """Load a results table from a results folder, a ``.parquet`` or a ``.csv`` file.

    List columns come back as sequences (JSON strings of a CSV are decoded).
    """
    source = Path(source)
    if source.is_dir():
        return collect(source)
    if not source.exists():
        raise FileNotFoundError(f"no results folder or table at {str(source)!r}")
    if source.suffix == ".parquet":
        return pd.read_parquet(source)
    if source.suffix == ".csv":
        table = pd.read_csv(source)
        for name in table.columns:
            if pd.api.types.is_object_dtype(table[name]) or pd.api.types.is_string_dtype(table[name]):
                table[name] = table[name].map(_from_json_text).astype(object)
        return table
    raise ValueError(f"`source` must be a folder, .parquet or .csv, got {str(source)!r}")
