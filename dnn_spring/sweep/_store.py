"""Run records on disk: one JSON file per run, written atomically, and the table.

A sweep's results folder holds ``<key>.json`` per finished run, ``key`` being
``RunConfig.key()``.  A record is written to a temporary file in the same
folder and moved into place with ``os.replace``, so a killed job leaves either
the whole record or none.  A file that does not parse, is not a dict, whose
``key`` does not match its name, or that breaks the record schema
(:func:`dnn_spring.train._record.check_record`: the config fields, ``status``,
the numbers, the load curve lists and the trajectory, each of its type) is *corrupt*: it is
reported by name with the reason (one warning line each), skipped by
:func:`collect`, and moved to ``<out_dir>/.bad/`` and rerun by the sweep.

:func:`collect` turns a folder into a DataFrame with one row per run;
:func:`save_table` / :func:`load_table` store it as Parquet (list columns such
as ``log_d`` stay lists) or CSV (list columns become JSON strings); the table
file is written atomically too.

A record that cannot be written (disk full, a file that cannot be replaced)
is not lost: :func:`write_record_or_keep` appends it to
``$TMPDIR/dnn-spring-unsaved-<pid>.jsonl`` and raises
:class:`RecordWriteError`, whose one line per record names the path, the OS
error and that file.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from dnn_spring._files import os_error_text, write_atomically
from dnn_spring.train._record import CURVE_FIELDS, FINISHED_STATUSES, check_record, short_repr
from dnn_spring.metrics._shape import load_shape

__all__ = [
    "CorruptRecordError",
    "FINISHED_STATUSES",
    "BAD_DIR",
    "record_path",
    "write_record",
    "write_record_or_keep",
    "RecordWriteError",
    "read_record",
    "move_aside",
    "scan_records",
    "collect",
    "save_table",
    "table_bytes",
    "load_table",
]

logger = logging.getLogger("dnn_spring.sweep._store")

TABLE_SUFFIXES = (".parquet", ".csv")
#: Folder of a results folder where the sweep moves corrupt records.
BAD_DIR = ".bad"
_MAX_PROBLEMS = 3


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


class RecordWriteError(OSError):
    """Run records that could not be written; each result was kept elsewhere.

    Attributes
    ----------
    failures : list of str
        One line per unwritten record: its path, the OS error and where the
        result went (``str(error)`` joins them with newlines).
    pairs : list of (str, str)
        ``(key, status)`` of the records that were written before the stop.
    """

    def __init__(self, failures, pairs=()):
        self.failures = list(failures)
        self.pairs = list(pairs)
        super().__init__("\n".join(self.failures) or "a record could not be written")

    def __reduce__(self):  # it travels back from pool workers and Slurm jobs
        return type(self), (self.failures, self.pairs)


def _keep_unsaved(record: dict, path: Path, exc: OSError) -> str:
    """Append ``record`` to the fallback file; the one line that says so."""
    line = f"could not write record {path}: {os_error_text(exc)}"
    fallback = Path(tempfile.gettempdir()) / f"dnn-spring-unsaved-{os.getpid()}.jsonl"
    text = json.dumps(record, default=_json_default)
    try:
        with open(fallback, "a") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        return (f"{line}; could not save it to {fallback} either ({os_error_text(err)}); "
                f"record: {text}")
    return f"{line}; its result was appended to {fallback}"


def write_record_or_keep(record: dict, out_dir) -> Path:
    """:func:`write_record`, and on an OS error keep the record elsewhere.

    The record is appended to ``$TMPDIR/dnn-spring-unsaved-<pid>.jsonl``
    (one JSON line; when that fails too, the record itself goes into the
    message) and :class:`RecordWriteError` says where, in one line.
    """
    try:
        return write_record(record, out_dir)
    except OSError as exc:
        path = record_path(out_dir, record["key"])
        raise RecordWriteError([_keep_unsaved(record, path, exc)]) from None


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


def read_record(path) -> dict:
    """Read and check one record file.

    Raises
    ------
    CorruptRecordError
        If the file is not a JSON object with a ``key`` equal to its file
        name that passes :func:`check_record`; the message lists the first
        problems found.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CorruptRecordError(f"{type(exc).__name__}: {exc}") from None
    if not isinstance(record, dict):
        raise CorruptRecordError(f"expected a JSON object, got {type(record).__name__}")
    if record.get("key") != path.stem:
        raise CorruptRecordError(f"its key {short_repr(record.get('key'))} does not match the file name")
    problems = check_record(record)
    if problems:
        more = len(problems) - _MAX_PROBLEMS
        text = "; ".join(problems[:_MAX_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        raise CorruptRecordError(text)
    return record


def move_aside(path, out_dir) -> Path:
    """Move a corrupt record file into ``<out_dir>/.bad/``, never over another one.

    Returns
    -------
    Path
        Where it went (``<name>.json``, or ``<name>.1.json``, ... when taken).
    """
    path = Path(path)
    folder = Path(out_dir) / BAD_DIR
    folder.mkdir(exist_ok=True)
    target, n = folder / path.name, 0
    while target.exists():
        n += 1
        target = folder / f"{path.stem}.{n}{path.suffix}"
    os.replace(path, target)
    return target


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

    Each skipped file is named with the reason in one warning line
    ("skipping corrupt record <path>: <reason>") when ``warn``; one bad file
    never stops the others.

    Returns
    -------
    DataFrame of shape (n_runs, n_fields)
        Every record field as a column (config fields, ``status``,
        ``test_acc``, ``log_d`` as lists, ...), sorted by ``slope`` and then
        the key.  Where records hold ``log_d_pinv32`` (0.5.0 on), also
        ``c_pinv32``, ``c_rel_pinv32`` and ``regime_pinv32``: the shape of
        that curve, logits point left out (NaN/None where it has none).
        Empty (no columns) when the folder has no records.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder {str(results_dir)!r} does not exist")
    records, _ = scan_records(results_dir, warn=warn)
    table = pd.DataFrame(list(records.values()))
    if len(table) and "slope" in table.columns:
        table = table.sort_values(["slope", "key"], kind="stable").reset_index(drop=True)
    if "log_d_pinv32" in table.columns:
        shapes = [_curve_shape(curve) for curve in table["log_d_pinv32"]]
        table["c_pinv32"] = [s[0] for s in shapes]
        table["c_rel_pinv32"] = [s[1] for s in shapes]
        table["regime_pinv32"] = [s[2] for s in shapes]
    return table


def _curve_shape(curve) -> tuple:
    """``(c, c_rel, regime)`` of a record's curve without its logits point; NaNs when it has none."""
    if not _is_listlike(curve) or len(curve) < 4:
        return np.nan, np.nan, None
    values = np.array([np.nan if v is None else v for v in curve[:-1]], dtype=np.float64)
    if not np.all(np.isfinite(values)):
        return np.nan, np.nan, None
    shape = load_shape(values, logits=None)
    return shape.c, shape.c_rel, shape.regime


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


def _table_bytes(table: pd.DataFrame, suffix: str) -> bytes:
    out = table.copy()
    if suffix == ".csv":
        for name in _list_columns(out):
            out[name] = out[name].map(_to_json_text)
        return out.to_csv(index=False).encode()
    buffer = io.BytesIO()
    try:
        out.to_parquet(buffer, index=False)
    except Exception:  # pyarrow cannot type a ragged column: store that one as JSON
        for name in _list_columns(out):
            if name not in CURVE_FIELDS:
                out[name] = out[name].map(_to_json_text)
        buffer = io.BytesIO()
        out.to_parquet(buffer, index=False)
    return buffer.getvalue()


def table_bytes(table: pd.DataFrame, path) -> bytes:
    """The bytes :func:`save_table` writes for ``path`` (its suffix picks the format)."""
    path = Path(path)
    if path.suffix not in TABLE_SUFFIXES:
        raise ValueError(f"table file must end in one of {TABLE_SUFFIXES}, got {str(path)!r}")
    return _table_bytes(table, path.suffix)


def save_table(table: pd.DataFrame, path) -> Path:
    """Write the collect table as ``.parquet`` (lists kept) or ``.csv`` (lists as JSON).

    The file is written atomically (:func:`write_atomically`): an error or a
    kill leaves the previous table, never half a new one.
    """
    path = Path(path)
    data = table_bytes(table, path)
    write_atomically(path, lambda handle: handle.write(data))
    return path


def _from_json_text(value):
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _plain(value):
    """A parquet cell as the record had it: arrays as lists, structs as dicts, all the way down."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.dtype == object else value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def load_table(source) -> pd.DataFrame:
    """Load a results table from a results folder, a ``.parquet`` or a ``.csv`` file.

    List columns come back as Python lists, and a trajectory as a list of dicts, from
    every source (JSON strings of a CSV are decoded, parquet arrays made lists).
    """
    source = Path(source)
    if source.is_dir():
        return collect(source)
    if not source.exists():
        raise FileNotFoundError(f"no results folder or table at {str(source)!r}")
    if source.suffix == ".parquet":
        table = pd.read_parquet(source)
        for name in table.columns:
            if pd.api.types.is_object_dtype(table[name]):
                table[name] = table[name].map(_plain).astype(object)
        return table
    if source.suffix == ".csv":
        table = pd.read_csv(source)
        for name in table.columns:
            if pd.api.types.is_object_dtype(table[name]) or pd.api.types.is_string_dtype(table[name]):
                table[name] = table[name].map(_from_json_text).astype(object)
        return table
    raise ValueError(f"`source` must be a folder, .parquet or .csv, got {str(source)!r}")
