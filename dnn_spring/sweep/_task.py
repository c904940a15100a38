"""The sweep's unit of work: train a chunk of configs and write their records.

:func:`run_task` trains a list of configs (one batched model via
:func:`~dnn_spring.train._group.train_group` when they share a
:func:`~dnn_spring.train._grouping.group_key`, else one after the other via
:func:`~dnn_spring.train._run.train_run`) and writes each record atomically to
``<out_dir>/<key>.json``.  It is a plain picklable function, so the same
unit runs inline, in a process pool or as a Slurm job
(:mod:`dnn_spring.sweep._executors`).

A batched group writes its records when the whole group is done; meanwhile
it saves its training state every :data:`CHECKPOINT_EVERY` seconds to
``<out_dir>/.checkpoints/`` (:func:`checkpoint_path`), so a killed chunk that
is run again goes on from there with the same numbers.  The checkpoint is
deleted once the group's records are written.

Configs that already have a finished record are not trained again (a
batched group only when all its members have one): a requeued Slurm task,
which gets its whole chunk again, goes on where it stopped.

A run that raises is recorded with ``status="failed"``; when the batched
trainer raises for a whole group, its members are retried one at a time (so
one bad config, or a group too large for memory, costs only itself).  A
record that cannot be written stops the chunk with
:class:`~dnn_spring.sweep._store.RecordWriteError` (its result is kept in the
fallback file; see :mod:`dnn_spring.sweep._store`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import multiprocessing
import time
import traceback
from pathlib import Path

from dnn_spring.train._group import train_group
from dnn_spring.train._config import RunConfig
from dnn_spring.train._grouping import max_group_size
from dnn_spring.train._preempt import Preempted, stop_requested
from dnn_spring.sweep._locks import running_lock
from dnn_spring.sweep._store import (FINISHED_STATUSES, CorruptRecordError, RecordWriteError, read_record,
                      record_path, write_record_or_keep)
from dnn_spring.train._record import STATUSES, fail_record, new_record
from dnn_spring.train._run import train_run

__all__ = ["run_task", "checkpoint_path", "CHECKPOINT_EVERY", "CHECKPOINT_DIR",
           "forget_unwritable"]

logger = logging.getLogger("dnn_spring.sweep._runner")

#: Folder of a results folder where ``save_weights`` keeps each ok run's final weights.
WEIGHTS_DIR = "weights"

#: Seconds between two saves of a batched group's training state.
CHECKPOINT_EVERY = 300.0
#: Folder of a results folder where running groups keep their state.
CHECKPOINT_DIR = ".checkpoints"
# Results folders this (worker) process failed to write a record to: it starts
# no further chunk for them, so a full disk stops a process pool quickly.
_UNWRITABLE: set = set()


def forget_unwritable(out_dir) -> None:
    """Let this process write to ``out_dir`` again (a new sweep starts)."""
    _UNWRITABLE.discard(str(out_dir))


def checkpoint_path(configs, out_dir) -> Path:
    """Where a batched group of ``configs`` keeps its training state while it runs."""
    digest = hashlib.sha1("\n".join(c.key() for c in configs).encode()).hexdigest()[:20]
    return Path(out_dir) / CHECKPOINT_DIR / f"{digest}.pt"


def _failed_record(config: RunConfig, exc: BaseException, device: str, wall: float) -> dict:
    record = fail_record(new_record(config, device), exc)
    record["wall_time"] = wall
    return record


def _save(record, config: RunConfig, out_dir) -> str:
    if not isinstance(record, dict) or record.get("status") not in STATUSES:
        what = record.get("status") if isinstance(record, dict) else type(record).__name__
        exc = TypeError(f"train function returned {what!r}, not a record with a known status")
        record = _failed_record(config, exc, "", 0.0)
    record = {**record, "key": config.key()}
    try:
        write_record_or_keep(record, out_dir)
    except RecordWriteError:
        _UNWRITABLE.add(str(out_dir))
        raise
    return record["status"]


def weights_path(out_dir, key: str) -> Path:
    """Where ``save_weights`` keeps the final weights of the run ``key``: a file that
    :func:`dnn_spring.train._saved.from_saved` (and ``diagnose --model``) reads."""
    return Path(out_dir) / WEIGHTS_DIR / f"{key}.pt"


def _save_weights(config, record, model, out_dir) -> None:
    """Keep an ok run's trained network (a failed write is one warning, never lost results)."""
    if model is None or not isinstance(record, dict) or record.get("status") != "ok":
        return
    from dnn_spring._files import os_error_text, write_atomically
    from dnn_spring.train._saved import model_bytes

    path = weights_path(out_dir, config.key())
    try:
        data = model_bytes(model)
        write_atomically(path, lambda handle: handle.write(data))
    except (OSError, TypeError) as exc:
        text = os_error_text(exc) if isinstance(exc, OSError) else str(exc)
        logger.warning("the weights of %s were not saved to %s: %s", config.key(), path, text)


def _split(result, n: "int | None") -> tuple:
    """``(records, models)`` of a trainer that was asked for its models."""
    if isinstance(result, tuple) and len(result) == 2:
        return result
    return result, (None if n is None else [None] * n)  # a trainer that returns records only


def _train_one(config, out_dir, device, train_fn, save_weights=False) -> tuple:
    start = time.perf_counter()
    model = None
    try:
        if save_weights:
            record, model = _split(train_fn(config, device=device, progress=False,
                                            return_model=True), None)
        else:
            record = train_fn(config, device=device, progress=False)
    except Exception as exc:  # recorded, the sweep goes on
        logger.debug("run %s failed:\n%s", config.key(), traceback.format_exc())
        record = _failed_record(config, exc, device, time.perf_counter() - start)
    if save_weights:
        _save_weights(config, record, model, out_dir)
    return config.key(), _save(record, config, out_dir)


def _finished(configs, out_dir) -> "list | None":
    """``(key, status)`` of every config when all have a finished record, else None.

    A requeued Slurm task gets its whole chunk again: this is how it skips
    what it finished before (a group only as a whole, so checkpoint names stay).
    """
    pairs = []
    for config in configs:
        try:
            status = read_record(record_path(out_dir, config.key())).get("status")
        except (OSError, CorruptRecordError):
            return None
        if status not in FINISHED_STATUSES:
            return None
        pairs.append((config.key(), status))
    return pairs


def _one_by_one(configs, out_dir, device, train_fn, save_weights=False) -> list:
    pairs = []
    for config in configs:
        done = _finished([config], out_dir)
        if done:
            pairs += done
            continue
        if stop_requested():  # a signal came: train nothing more
            raise Preempted(f"stop requested after {len(pairs)} of {len(configs)} runs")
        try:
            pairs.append(_train_one(config, out_dir, device, train_fn, save_weights))
        except RecordWriteError as exc:  # stop: the next record would not fit either
            raise RecordWriteError(exc.failures, pairs + exc.pairs) from None
    return pairs


def _write_group(configs, records, out_dir) -> list:
    """Write every record of a trained group that fits; ``(key, status)`` pairs."""
    pairs, failures = [], []
    for config, record in zip(configs, records):
        try:
            pairs.append((config.key(), _save(record, config, out_dir)))
        except RecordWriteError as exc:
            failures += exc.failures
    if failures:  # the checkpoint stays: a rerun goes on from it
        raise RecordWriteError(failures, pairs)
    return pairs


def _run_group(configs, out_dir, device, train_fn, group_fn, save_weights=False) -> list:
    if len(configs) == 1:
        return _one_by_one(configs, out_dir, device, train_fn, save_weights)
    checkpoint = checkpoint_path(configs, out_dir)
    try:
        with running_lock(checkpoint):  # a live checkpoint is never removed as stale
            extra = {"return_models": True} if save_weights else {}
            records, models = _split(group_fn(configs, device=device, progress=False,
                                              checkpoint=checkpoint,
                                              checkpoint_every=CHECKPOINT_EVERY, **extra),
                                     len(configs))
        if len(records) != len(configs):
            raise RuntimeError(f"got {len(records)} records for {len(configs)} configs")
    except Exception as exc:
        logger.warning("batched group of %d failed (%s: %s); running its members one by one",
                       len(configs), type(exc).__name__, exc)
        return _one_by_one(configs, out_dir, device, train_fn, save_weights)
    if save_weights:
        for config, record, model in zip(configs, records, models):
            _save_weights(config, record, model, out_dir)
    pairs = _write_group(configs, records, out_dir)
    if all(status != "failed" for _, status in pairs):  # else a retry may go on from it
        checkpoint.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            checkpoint.parent.rmdir()  # only when empty
    return pairs


def run_task(configs, out_dir, *, device="cpu", batch=True, train_fn=None,
              group_fn=None, save_weights=False) -> list:
    """Train ``configs`` and write one record each to ``out_dir`` (the unit of work).

    Parameters
    ----------
    configs : list of RunConfig
        Configs of one chunk; with ``batch`` they must share a ``group_key``.
    out_dir : str or Path
        Results folder.
    device : str, default="cpu"
    batch : bool, default=True
        Train a chunk of several configs as one batched model with ``group_fn``.
    train_fn, group_fn : callable, optional
        The trainers this chunk uses; default
        ``train_run(config, *, device, progress, grouped=True)`` (a group of one,
        so a record does not depend on how the sweep was grouped) and
        ``train_group(configs, *, device, progress, checkpoint, checkpoint_every)``.
        Tests and other trainers pass their own through
        ``functools.partial(run_task, ...)``.  With ``save_weights`` they are
        called with ``return_model=True`` (``return_models=True``) as
        :func:`~dnn_spring.train._run.train_run` and
        :func:`~dnn_spring.train._group.train_group` take it.  A chunk larger than
        :func:`~dnn_spring.train._grouping.max_group_size` allows on this device (a
        Slurm chunk planned on a login node) is trained in several groups,
        the same ones the sweep plans its checkpoints for.

    save_weights : bool, default=False
        Also write each ok run's trained network to
        ``out_dir/weights/<key>.pt`` (:func:`weights_path`; about 0.4 MB for the
        paper's MLP), for weights-only measures such as WeightWatcher's.

    Returns
    -------
    list of (str, str)
        ``(key, status)`` per config, in order.

    Raises
    ------
    RecordWriteError
        A record could not be written (its result went to the fallback file);
        the chunk stops there.
    """
    configs = list(configs)
    # a single run as a group of one: a sweep's records do not depend on how it was grouped
    train_fn = train_fn or functools.partial(train_run, grouped=True)
    group_fn = group_fn or train_group
    if multiprocessing.parent_process() is not None and str(out_dir) in _UNWRITABLE:
        raise RecordWriteError([])  # a worker that could not write: start nothing more
    if not batch or len(configs) == 1:
        return _one_by_one(configs, out_dir, device, train_fn, save_weights)
    limit = max(1, int(max_group_size(configs[0], device=device)))
    pairs = []
    for start in range(0, len(configs), limit):
        if stop_requested():  # a Slurm job near its limit: requeue before the next group
            raise Preempted(f"stop requested after {len(pairs)} of {len(configs)} runs")
        done = _finished(configs[start:start + limit], out_dir)
        if done:
            pairs += done
            continue
        try:
            pairs += _run_group(configs[start:start + limit], out_dir, device, train_fn, group_fn,
                                save_weights)
        except RecordWriteError as exc:
            raise RecordWriteError(exc.failures, pairs + exc.pairs) from None
    return pairs
