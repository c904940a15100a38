"""Run a grid of configs, resumably, locally or on Slurm.

:func:`run_sweep` skips every config that already has a finished record in
the results folder, splits the rest into chunks (:func:`plan_tasks`: configs
of one :func:`~dnn_spring.train._grouping.group_key`, at most
:func:`~dnn_spring.train._grouping.max_group_size` each, enough to keep every
worker busy) and hands them, with one unit of work (by default
:func:`dnn_spring.sweep._task.run_task`, which trains a chunk and writes its
records), to an executor of :mod:`dnn_spring.sweep._executors`:

- ``"debug"``: inline in this process;
- ``"local"``: a process pool of ``workers`` processes (inline when
  ``workers == 1`` or there is one chunk);
- ``"slurm"``: one task of a job array per chunk, logs in
  ``<out_dir>/.submitit``; each task splits its chunk to fit its device.
  With ``wait=False`` the sweep returns once submitted; configs of tasks the
  queue still holds are not submitted again (see :mod:`dnn_spring.sweep._slurm`).

Locally each process trains with
:func:`~dnn_spring.sweep._executors.threads_per_worker` torch threads: ``threads``
if given, else ``OMP_NUM_THREADS`` if set, else ``cpus // workers``
(restored afterwards when inline); every record stores the count.  A run's
record depends on its config, the machine and the thread count only, not on
the group it was batched in (:mod:`dnn_spring.train._member_ops`), so a resumed or
extended sweep gives the same numbers as one run at once.  A killed sweep
that is run again goes on from its groups' checkpoints
(:mod:`dnn_spring.sweep._task`); at the start of a sweep, a checkpoint in
``.checkpoints/`` that belongs to none of the planned groups (the grid, the
workers or the device changed) is stale and removed (one info line); a
checkpoint whose group is training now, in any process, is never stale.
One local sweep runs in a folder at a time: it holds ``<out_dir>/.sweep.lock``
(:func:`dnn_spring.sweep._locks.folder_lock`) and a second one refuses with one
line naming the holder (:class:`~dnn_spring.sweep._locks.FolderBusyError`).

Failures: a run that raises is recorded with ``status="failed"`` and the
error message, and the sweep goes on; "failed" records are retried on the
next invocation, "ok" and "diverged" ones are final.  A corrupt record file
(see :mod:`dnn_spring.sweep._store`) is named in one warning line, moved to
``<out_dir>/.bad/`` and its run redone.  A chunk whose worker or job died is
counted as ``lost`` (rerun the sweep to redo it).

Write errors: a record that cannot be written (disk full, a file that cannot
be replaced) loses nothing: it is appended to
``$TMPDIR/dnn-spring-unsaved-<pid>.jsonl``, the other records of its batched
group are still written, no further chunk is started, and :func:`run_sweep`
raises :class:`~dnn_spring.sweep._store.RecordWriteError` with one line per
unwritten record, naming its path, the OS error and where its result went.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from dnn_spring._checks import check_choice, check_range
from dnn_spring.sweep._task import CHECKPOINT_DIR, checkpoint_path, forget_unwritable, run_task
from dnn_spring.sweep import EXECUTORS
from dnn_spring.sweep._executors import run_inline, run_pool, threads_per_worker
from dnn_spring.sweep._locks import FolderBusyError, folder_lock, held
from dnn_spring.train._grouping import fixed_group_size, group_key, max_group_size
from dnn_spring.sweep._store import FINISHED_STATUSES, RecordWriteError, move_aside, os_error_text, scan_records
from dnn_spring.sweep._slurm import SlurmOptions, live_tasks, require_slurm, submission_lock, submit_tasks
from dnn_spring.sweep._slurm_status import follow

__all__ = ["run_sweep", "plan_tasks", "pending_configs", "planned_checkpoints", "SlurmOptions",
           "EXECUTORS", "RecordWriteError", "run_task", "checkpoint_path", "threads_per_worker"]
# The submitting host may lack the tasks' GPU: a Slurm task splits its chunk to fit
# its own device (run_task), so a Slurm sweep plans chunks by group key only.

logger = logging.getLogger("dnn_spring.sweep._runner")


def planned_checkpoints(chunks, out_dir, device, *, sized_here: bool = True) -> set:
    """File names of the checkpoints the groups of ``chunks`` may write.

    A chunk is trained in groups of ``max_group_size`` configs (run_task);
    when that size is not known here (``sized_here=False``: a Slurm job
    splits by its own device), every split of the chunk counts.
    """
    names = set()
    for chunk in (c for c in chunks if len(c) > 1):
        sizes = [max(1, max_group_size(chunk[0], device=device))] if sized_here else \
            range(2, len(chunk) + 1)
        for size in sizes:
            for start in range(0, len(chunk), size):
                group = chunk[start:start + size]
                if len(group) > 1:
                    names.add(checkpoint_path(group, out_dir).name)
    return names


def _remove_stale_checkpoints(chunks, out_dir, device, sized_here: bool) -> None:
    folder = Path(out_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return
    planned = planned_checkpoints(chunks, out_dir, device, sized_here=sized_here)
    stale = [p for p in folder.glob("*.pt") if p.name not in planned and not held(p)]
    for path in stale:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()  # only when empty
    if stale:
        logger.info("removed %d stale checkpoint%s from %s (their groups are not in this sweep)",
                    len(stale), "s" * (len(stale) > 1), folder)


def pending_configs(configs, out_dir, *, retry_failed=True, move_bad=False) -> list:
    """The configs without a finished record in ``out_dir`` (duplicates dropped).

    Corrupt record files are reported (one warning each, with the reason) and
    count as not finished, as do "failed" records when ``retry_failed``.
    With ``move_bad`` (the sweep) each corrupt file is moved to
    ``<out_dir>/.bad/`` first.
    """
    configs = list(configs)
    records, corrupt = scan_records(out_dir, warn=not move_bad)
    keys = {c.key() for c in configs}
    for path, reason in corrupt if move_bad else ():
        try:
            where = f"moved to {move_aside(path, out_dir)}"
        except OSError as exc:
            where = f"could not move it aside ({os_error_text(exc)})"
        then = "its run will be redone" if path.stem in keys else "it is not in this sweep"
        logger.warning("corrupt record %s (%s); %s, %s", path, reason, where, then)
    done_statuses = FINISHED_STATUSES if retry_failed else FINISHED_STATUSES + ("failed",)
    seen, pending = set(), []
    for config in configs:
        key = config.key()
        if key in seen:
            continue
        seen.add(key)
        if key not in records or records[key].get("status") not in done_statuses:
            pending.append(config)
    return pending


def plan_tasks(configs, *, batch=True, device="cpu", workers=1, max_size=None) -> list:
    """Split configs into chunks: same ``group_key``, at most ``max_group_size`` each.

    A group is also split so the chunks keep all ``workers`` busy; chunks of
    one group have sizes differing by at most one.  Without ``batch`` every
    config is its own chunk.  ``max_size`` replaces ``max_group_size`` as the
    cap (a Slurm sweep plans with no cap: each job splits its chunk to fit
    its own device), except where the size does not depend on the machine
    (:func:`~dnn_spring.train._grouping.fixed_group_size`: a CNN on a CPU, alone).

    Returns
    -------
    list of list of RunConfig
    """
    configs = list(configs)
    if not batch:
        return [[c] for c in configs]
    groups: dict = {}
    for config in configs:
        groups.setdefault(group_key(config), []).append(config)
    chunks = []
    for members in groups.values():
        largest = (fixed_group_size(members[0], device) or max_size
                   or max_group_size(members[0], device=device))
        share = math.ceil(workers * len(members) / max(1, len(configs)))
        n_chunks = min(len(members), max(math.ceil(len(members) / max(1, largest)), share))
        bounds = np.linspace(0, len(members), n_chunks + 1).round().astype(int)
        chunks.extend(members[a:b] for a, b in zip(bounds[:-1], bounds[1:]))
    return chunks


def run_sweep(configs, out_dir, *, executor="local", workers=1, device="cpu", batch=True,
              retry_failed=True, progress=True, desc="sweep", slurm=None, threads=None,
              chunk_fn=run_task, wait=True) -> dict:
    """Train every config without a finished record in ``out_dir``.

    Parameters
    ----------
    configs : list of RunConfig
        The grid, e.g. from :func:`dnn_spring.sweep._grids.expand_grid`.
    out_dir : str or Path
        Results folder; one ``<key>.json`` per run.
    executor : {"local", "debug", "slurm"}, default="local"
    workers : int, default=1
        Local worker processes (``"local"``).  The pool starts them with
        ``spawn`` (safe with torch threads), so a script that asks for more
        than one must call this under ``if __name__ == "__main__":``.
    device : str, default="cpu"
    batch : bool, default=True
        Train compatible configs as one batched model (``train_group``).
    retry_failed : bool, default=True
        Rerun configs whose record says "failed".
    progress : bool, default=True
        Show a tqdm bar (runs, ETA) on stderr.
    slurm : SlurmOptions, optional
    wait : bool, default=True
        With ``"slurm"``: follow the tasks (this submission's and those still
        queued from earlier ones) until they leave the queue.  ``False``
        returns after submitting.
    threads : int, optional
        Torch threads per local worker (default ``OMP_NUM_THREADS`` if set,
        else CPUs // workers).
    chunk_fn : callable, default :func:`dnn_spring.sweep._task.run_task`
        The unit of work, ``chunk_fn(configs, out_dir, *, device, batch)``
        returning ``(key, status)`` per config; it must be picklable for the
        pool and Slurm (e.g. ``functools.partial(run_task, train_fn=...)``).

    Returns
    -------
    dict
        ``total``, ``skipped`` (already finished), ``ran``, ``ok``,
        ``diverged``, ``failed``, ``lost`` (in chunks whose worker died) and
        ``wall_time`` in seconds; with ``"slurm"`` also ``submitted`` (runs),
        ``queued`` (runs left to tasks of earlier submissions), ``job_ids``
        (this submission's tasks) and ``waited``.

    Raises
    ------
    FolderBusyError
        Another local sweep is running in ``out_dir`` (:mod:`dnn_spring.sweep._locks`);
        nothing was started.
    RecordWriteError
        Some records could not be written (their results were appended to a
        fallback file, see the module docstring); the sweep stopped.
    """
    check_choice("executor", executor, EXECUTORS)
    check_range("workers", int(workers), 1)
    n_threads = threads_per_worker(int(workers), threads)
    start = time.perf_counter()
    configs = list(configs)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    forget_unwritable(out_dir)
    summary = {"total": len({c.key() for c in configs}), "ran": 0, "ok": 0, "diverged": 0,
               "failed": 0, "lost": 0}
    args = {"out_dir": str(out_dir), "device": device, "batch": batch}
    if executor == "slurm":
        _sweep_on_slurm(configs, out_dir, summary, args, slurm or SlurmOptions(), wait=wait,
                        retry_failed=retry_failed, workers=workers, chunk_fn=chunk_fn,
                        bar=(progress, desc))
        summary["wall_time"] = time.perf_counter() - start
        return summary
    with folder_lock(out_dir):  # one local sweep per folder: a second one refuses
        pending = pending_configs(configs, out_dir, retry_failed=retry_failed, move_bad=True)
        summary["skipped"] = summary["total"] - len(pending)
        chunks = _plan(pending, out_dir, workers=workers, device=device, batch=batch)
        if executor == "debug" or workers == 1 or len(chunks) <= 1:
            results = run_inline(chunks, chunk_fn, args, n_threads)
        else:
            results = run_pool(chunks, chunk_fn, args, min(workers, len(chunks)), n_threads)
        _drain(results, summary, len(pending), progress, desc)
    summary["wall_time"] = time.perf_counter() - start
    return summary


class _Key(str):
    """A config known only by its key (a task of an earlier submission)."""

    def key(self) -> str:
        return str(self)


def _sweep_on_slurm(configs, out_dir, summary, args, options, *, wait, retry_failed, workers,
                    chunk_fn, bar) -> None:
    """Submit what is neither finished nor queued, under the folder's lock; then maybe follow."""
    require_slurm(options)
    with submission_lock(out_dir):
        # the queue before the records: a task that ends in between has written them
        earlier = live_tasks(out_dir)
        live = {key for t in earlier for key in t["keys"]}
        pending = pending_configs(configs, out_dir, retry_failed=retry_failed, move_bad=True)
        todo = [c for c in pending if c.key() not in live]
        running = [[_Key(k) for k in t["keys"]] for t in earlier]
        chunks = plan_tasks(todo, batch=args["batch"], workers=workers, max_size=1 << 30,
                             device=args["device"])
        if args["batch"]:  # a queued task's checkpoint is not stale
            _remove_stale_checkpoints(chunks + running, out_dir, args["device"], sized_here=False)
        submitted = submit_tasks(chunks, chunk_fn, args, options) if chunks else []
    summary.update(skipped=summary["total"] - len(pending), submitted=len(todo),
                   queued=len(pending) - len(todo), waited=wait,
                   job_ids=[entry["job_id"] for _, _, entry in submitted])
    if wait:
        followed = submitted + [(None, chunk, t) for chunk, t in zip(running, earlier) if chunk]
        _drain(follow(followed, out_dir, options), summary, sum(len(c) for _, c, _ in followed),
               *bar)


def _plan(pending, out_dir, *, workers, device, batch) -> list:
    """The chunks of a sweep; stale checkpoints in ``out_dir`` are removed."""
    chunks = plan_tasks(pending, batch=batch, device=device, workers=workers)
    if batch:
        _remove_stale_checkpoints(chunks, out_dir, device, sized_here=True)
    return chunks


def _count(summary, pairs) -> None:
    for _, status in pairs:
        summary[status] = summary.get(status, 0) + 1
    summary["ran"] += len(pairs)


def _drain(results, summary, total, progress, desc) -> None:
    failures = []
    with tqdm(total=total, desc=desc, unit="run", disable=not progress, dynamic_ncols=True) as bar:
        try:
            for chunk, outcome in results:
                if isinstance(outcome, RecordWriteError):  # from a worker; the others stop too
                    failures += outcome.failures
                    _count(summary, outcome.pairs)
                elif isinstance(outcome, BaseException):
                    summary["lost"] += len(chunk)
                    logger.warning("a chunk of %d runs was lost (%s: %s); rerun the sweep to redo it",
                                   len(chunk), type(outcome).__name__, outcome)
                else:
                    _count(summary, outcome)
                bar.update(len(chunk))
                bar.set_postfix(ok=summary["ok"], diverged=summary["diverged"],
                                failed=summary["failed"], refresh=False)
        except RecordWriteError as exc:  # raised in this process: stop here
            failures += exc.failures
            _count(summary, exc.pairs)
    if failures:
        raise RecordWriteError(failures)
