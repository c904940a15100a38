"""Run a grid of configs, resumably, locally or on Slurm.

The unit of work is :func:`run_chunk`: a picklable function that trains a
list of configs (one batched model via ``train_group`` when they share a
``group_key``, else one after the other via ``train_run``) and writes each
record atomically to ``<out_dir>/<key>.json``.  :func:`run_sweep` skips every
config that already has a finished record, splits the rest into chunks and
hands them to an executor:

- ``"debug"``: inline in this process;
- ``"local"``: a process pool of ``workers`` processes (inline when
  ``workers == 1`` or there is one chunk);
- ``"slurm"``: one submitit job per chunk (a job array), logs in
  ``<out_dir>/.submitit``; each job splits its chunk to fit its device.

Locally each process trains with :func:`threads_per_worker` torch threads:
``threads`` if given, else ``OMP_NUM_THREADS`` if set, else ``cpus // workers``
(restored afterwards when inline); every record stores the count.  A run's
record depends on its config, the machine and the thread count only, not on
the group it was batched in (:mod:`dnn_spring._member_ops`), so a resumed or
extended sweep gives the same numbers as one run at once.  A batched chunk writes its
records when the whole chunk is done; meanwhile it saves its training state
every :data:`CHECKPOINT_EVERY` seconds to ``<out_dir>/.checkpoints/`` (see
:func:`checkpoint_path`), so a killed sweep that is run again goes on from
there with the same numbers, and a kill loses at most that much training
per worker.  A checkpoint is deleted once its chunk's records are written;
at the start of a sweep, a checkpoint in ``.checkpoints/`` that belongs to
none of the planned groups (the grid, the workers or the device changed) is
stale and removed (one info line).

Failures: a run that raises is recorded with ``status="failed"`` and the
error message, and the sweep goes on.  When ``train_group`` raises for a
whole chunk, its members are retried one at a time with ``train_run`` (so one
bad config, or a group too large for memory, costs only itself).  "failed"
records are retried on the next invocation; "ok" and "diverged" ones are
final.  A corrupt record file (see :mod:`dnn_spring.records`) is named in one
warning line, moved to ``<out_dir>/.bad/`` and its run redone.

Write errors: a record that cannot be written (disk full, a file that cannot
be replaced) loses nothing: it is appended to
``$TMPDIR/dnn-spring-unsaved-<pid>.jsonl``, the other records of its batched
group are still written, no further chunk is started, and :func:`run_sweep`
raises :class:`RecordWriteError` with one line per unwritten record, naming
its path, the OS error and where its result went.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import logging
import math
import multiprocessing
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnn_spring.config import RunConfig
from dnn_spring.records import (FINISHED_STATUSES, RecordWriteError, move_aside, os_error_text,
                                scan_records, write_record_or_keep)

__all__ = ["SlurmOptions", "EXECUTORS", "RecordWriteError", "run_chunk", "plan_chunks",
           "pending_configs", "run_sweep", "checkpoint_path", "CHECKPOINT_EVERY",
           "threads_per_worker"]

logger = logging.getLogger("dnn_spring.sweep")

EXECUTORS = ("local", "debug", "slurm")
#: Seconds between two saves of a batched chunk's training state.
CHECKPOINT_EVERY = 300.0
CHECKPOINT_DIR = ".checkpoints"
# Results folders this (worker) process failed to write a record to: it starts
# no further chunk for them, so a full disk stops a process pool quickly.
_UNWRITABLE: set = set()


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of each Slurm job (one job per chunk), passed to submitit.

    ``cluster=None`` lets submitit pick Slurm when ``sbatch`` exists and run
    locally otherwise; ``"local"`` or ``"debug"`` force its local executors.
    """

    partition: "str | None" = None
    time_min: int = 240
    gpus: int = 0
    cpus: int = 2
    mem_gb: "float | None" = None
    parallel: int = 64
    cluster: "str | None" = None


def _failed_record(config: RunConfig, exc: BaseException, device: str, wall: float) -> dict:
    from dnn_spring.train import fail_record, new_record

    record = fail_record(new_record(config, device), exc)
    record["wall_time"] = wall
    return record


def _save(record, config: RunConfig, out_dir) -> str:
    if not isinstance(record, dict) or record.get("status") not in ("ok", "diverged", "failed"):
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


def _train_one(config, out_dir, device, train_fn) -> tuple:
    start = time.perf_counter()
    try:
        record = train_fn(config, device=device, progress=False)
    except Exception as exc:  # recorded, the sweep goes on
        logger.debug("run %s failed:\n%s", config.key(), traceback.format_exc())
        record = _failed_record(config, exc, device, time.perf_counter() - start)
    return config.key(), _save(record, config, out_dir)


def _one_by_one(configs, out_dir, device, train_fn) -> list:
    pairs = []
    for config in configs:
        try:
            pairs.append(_train_one(config, out_dir, device, train_fn))
        except RecordWriteError as exc:  # stop: the next record would not fit either
            raise RecordWriteError(exc.failures, pairs + exc.pairs) from None
    return pairs


def run_chunk(configs, out_dir, *, device="cpu", batch=True, train_fn=None, group_fn=None,
              max_size_fn=None) -> list:
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
    train_fn, group_fn, max_size_fn : callable, optional
        ``train_run(config, *, device, progress)``,
        ``train_group(configs, *, device, progress, checkpoint, checkpoint_every)`` and
        ``max_group_size(config, *, device)``; default: the package's.  A
        chunk larger than ``max_size_fn`` allows on this device (a Slurm chunk
        planned on a login node) is trained in several groups.

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
    if multiprocessing.parent_process() is not None and str(out_dir) in _UNWRITABLE:
        raise RecordWriteError([])  # a worker that could not write: start nothing more
    if train_fn is None:
        from dnn_spring.train import train_run as train_fn
    if not batch or len(configs) == 1:
        return _one_by_one(configs, out_dir, device, train_fn)
    if group_fn is None or max_size_fn is None:
        from dnn_spring import batched

        group_fn = group_fn or batched.train_group
        max_size_fn = max_size_fn or batched.max_group_size
    limit = max(1, int(max_size_fn(configs[0], device=device)))
    pairs = []
    for start in range(0, len(configs), limit):
        try:
            pairs += _run_group(configs[start:start + limit], out_dir, device, train_fn, group_fn)
        except RecordWriteError as exc:
            raise RecordWriteError(exc.failures, pairs + exc.pairs) from None
    return pairs


def checkpoint_path(configs, out_dir) -> Path:
    """Where a batched group of ``configs`` keeps its training state while it runs."""
    digest = hashlib.sha1("\n".join(c.key() for c in configs).encode()).hexdigest()[:20]
    return Path(out_dir) / CHECKPOINT_DIR / f"{digest}.pt"


def _run_group(configs, out_dir, device, train_fn, group_fn) -> list:
    if len(configs) > 1:
        checkpoint = checkpoint_path(configs, out_dir)
        try:
            records = group_fn(configs, device=device, progress=False, checkpoint=checkpoint,
                               checkpoint_every=CHECKPOINT_EVERY)
            if len(records) != len(configs):
                raise RuntimeError(f"got {len(records)} records for {len(configs)} configs")
        except Exception as exc:
            logger.warning("batched group of %d failed (%s: %s); running its members one by one",
                           len(configs), type(exc).__name__, exc)
        else:
            pairs, failures = [], []
            for config, record in zip(configs, records):  # write every record that fits
                try:
                    pairs.append((config.key(), _save(record, config, out_dir)))
                except RecordWriteError as exc:
                    failures += exc.failures
            if failures:  # the checkpoint stays: a rerun goes on from it
                raise RecordWriteError(failures, pairs)
            if all(status != "failed" for _, status in pairs):  # else a retry may go on from it
                checkpoint.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    checkpoint.parent.rmdir()  # only when empty
            return pairs
    return _one_by_one(configs, out_dir, device, train_fn)


def _planned_checkpoints(chunks, out_dir, device, max_size_fn) -> set:
    """File names of the checkpoints the groups of ``chunks`` may write.

    A chunk is trained in groups of ``max_size_fn`` configs (run_chunk); when
    that size is not known here (a Slurm job splits by its own device), every
    split of the chunk counts.
    """
    names = set()
    for chunk in (c for c in chunks if len(c) > 1):
        sizes = [max(1, int(max_size_fn(chunk[0], device=device)))] if max_size_fn else \
            range(2, len(chunk) + 1)
        for size in sizes:
            for start in range(0, len(chunk), size):
                group = chunk[start:start + size]
                if len(group) > 1:
                    names.add(checkpoint_path(group, out_dir).name)
    return names


def _remove_stale_checkpoints(chunks, out_dir, device, max_size_fn) -> None:
    folder = Path(out_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return
    planned = _planned_checkpoints(chunks, out_dir, device, max_size_fn)
    stale = [p for p in folder.glob("*.pt") if p.name not in planned]
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


def plan_chunks(configs, *, batch=True, device="cpu", workers=1, group_key_fn=None,
                max_size_fn=None) -> list:
    """Split configs into chunks: same ``group_key``, at most ``max_group_size`` each.

    A group is also split so the chunks keep all ``workers`` busy; chunks of
    one group have sizes differing by at most one.  Without ``batch`` every
    config is its own chunk.

    Returns
    -------
    list of list of RunConfig
    """
    configs = list(configs)
    if not batch:
        return [[c] for c in configs]
    if group_key_fn is None or max_size_fn is None:
        from dnn_spring import batched

        group_key_fn = group_key_fn or batched.group_key
        max_size_fn = max_size_fn or batched.max_group_size
    groups: dict = {}
    for config in configs:
        groups.setdefault(group_key_fn(config), []).append(config)
    chunks = []
    for members in groups.values():
        largest = max(1, int(max_size_fn(members[0], device=device)))
        share = math.ceil(workers * len(members) / max(1, len(configs)))
        n_chunks = min(len(members), max(math.ceil(len(members) / largest), share))
        bounds = np.linspace(0, len(members), n_chunks + 1).round().astype(int)
        chunks.extend(members[a:b] for a, b in zip(bounds[:-1], bounds[1:]))
    return chunks


def _no_limit(config, *, device="cpu") -> int:
    return 1 << 30


def _init_worker(threads: int, parent: "int | None" = None) -> None:
    _die_with_parent(parent)
    import torch

    torch.set_num_threads(threads)


def _die_with_parent(parent: "int | None" = None) -> None:
    # Linux only: a SIGKILLed sweep takes its workers with it, so they do not
    # keep writing records next to a rerun.
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:
        os._exit(1)  # the sweep died before the signal was armed: exit as it would have


def threads_per_worker(workers: int, threads: "int | None" = None) -> int:
    """Torch threads of each local worker.

    ``threads`` when given; else ``OMP_NUM_THREADS`` when it is set to a
    positive integer; else the CPUs shared out, ``max(1, cpus // workers)``.
    The count is recorded in every record (``threads``): float32 training
    sums in another order on another number of threads.
    """
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"`threads` must be >= 1, got {threads!r}")
        return int(threads)
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    # Small MLPs gain little from intra-op threads, and oversubscribed
    # OpenMP threads are ruinous on a shared CPU (measured: 1 run, 100
    # epochs, digits: 2.9 s with 1 thread, 42 s with 2 on a busy 2-core box).
    return max(1, (os.cpu_count() or 1) // workers)


def _run_inline(chunks, args, threads):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for chunk in chunks:
            yield chunk, run_chunk(chunk, **args)
    finally:
        torch.set_num_threads(before)


def _run_pool(chunks, args, workers, threads):
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                initargs=(threads, os.getpid())) as pool:
        futures = {pool.submit(run_chunk, chunk, **args): chunk for chunk in chunks}
        for future in cf.as_completed(futures):
            yield futures[future], _result_or_error(future.result)


def _chunk_job(chunk, **args):
    # submitit turns a job's exception into a FailedJobError holding a traceback;
    # a RecordWriteError comes back as the result, with its one-line messages.
    try:
        return run_chunk(chunk, **args)
    except RecordWriteError as exc:
        return exc


def _run_slurm(chunks, args, options: SlurmOptions):
    import submitit

    executor = submitit.AutoExecutor(folder=Path(args["out_dir"]) / ".submitit", cluster=options.cluster)
    params = {"timeout_min": options.time_min, "cpus_per_task": options.cpus,
              "gpus_per_node": options.gpus, "slurm_array_parallelism": options.parallel}
    if options.partition:
        params["slurm_partition"] = options.partition
    if options.mem_gb:
        params["mem_gb"] = options.mem_gb
    executor.update_parameters(**params)
    with executor.batch():
        jobs = [executor.submit(_chunk_job, chunk, **args) for chunk in chunks]
    chunk_of = {id(job): chunk for job, chunk in zip(jobs, chunks)}
    logger.info("submitted %d jobs, logs in %s", len(jobs), executor.folder)
    for job in submitit.helpers.as_completed(jobs, poll_frequency=5):
        yield chunk_of[id(job)], _result_or_error(job.result)


def _result_or_error(get):
    try:
        return get()
    except Exception as exc:  # a dead worker or job: its runs stay unfinished
        return exc


def run_sweep(configs, out_dir, *, executor="local", workers=1, device="cpu", batch=True,
              retry_failed=True, progress=True, desc="sweep", slurm=None, threads=None,
              train_fn=None, group_fn=None, group_key_fn=None, max_size_fn=None) -> dict:
    """Train every config without a finished record in ``out_dir``.

    Parameters
    ----------
    configs : list of RunConfig
        The grid, e.g. from :func:`dnn_spring.grids.expand_grid`.
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
    threads : int, optional
        Torch threads per local worker (see :func:`threads_per_worker`:
        default ``OMP_NUM_THREADS`` if set, else CPUs // workers).
    train_fn, group_fn, group_key_fn, max_size_fn : callable, optional
        Replace ``train_run``, ``train_group``, ``group_key`` and
        ``max_group_size`` (tests use fast fakes).

    Returns
    -------
    dict
        ``total``, ``skipped`` (already finished), ``ran``, ``ok``,
        ``diverged``, ``failed``, ``lost`` (in chunks whose worker died) and
        ``wall_time`` in seconds.

    Raises
    ------
    RecordWriteError
        Some records could not be written (their results were appended to a
        fallback file, see the module docstring); the sweep stopped.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"`executor` must be one of {set(EXECUTORS)}, got {executor!r}")
    if int(workers) < 1:
        raise ValueError(f"`workers` must be >= 1, got {workers!r}")
    n_threads = threads_per_worker(int(workers), threads)
    start = time.perf_counter()
    configs = list(configs)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    _UNWRITABLE.discard(str(out_dir))
    pending = pending_configs(configs, out_dir, retry_failed=retry_failed, move_bad=True)
    summary = {"total": len({c.key() for c in configs}), "ran": 0, "ok": 0, "diverged": 0,
               "failed": 0, "lost": 0}
    summary["skipped"] = summary["total"] - len(pending)
    if executor == "slurm" and max_size_fn is None:
        # The submitting host may lack the jobs' GPU: each job splits its chunk
        # to fit its own device (run_chunk); here only the group keys matter.
        chunks = plan_chunks(pending, batch=batch, device="cpu", workers=workers,
                             group_key_fn=group_key_fn, max_size_fn=_no_limit)
    else:
        chunks = plan_chunks(pending, batch=batch, device=device, workers=workers,
                             group_key_fn=group_key_fn, max_size_fn=max_size_fn)
    if batch:
        size_fn = max_size_fn
        if size_fn is None and executor != "slurm":  # a Slurm job sizes groups on its own device
            from dnn_spring.batched import max_group_size as size_fn
        _remove_stale_checkpoints(chunks, out_dir, device, size_fn)
    args = {"out_dir": str(out_dir), "device": device, "batch": batch, "train_fn": train_fn,
            "group_fn": group_fn, "max_size_fn": max_size_fn}
    if executor == "slurm":
        results = _run_slurm(chunks, args, slurm or SlurmOptions())
    elif executor == "debug" or workers == 1 or len(chunks) <= 1:
        results = _run_inline(chunks, args, n_threads)
    else:
        results = _run_pool(chunks, args, min(workers, len(chunks)), n_threads)
    _drain(results, summary, len(pending), progress, desc)
    summary["wall_time"] = time.perf_counter() - start
    return summary


def _count(summary, pairs) -> None:
    for _, status in pairs:
        summary[status] = summary.get(status, 0) + 1
    summary["ran"] += len(pairs)


def _drain(results, summary, total, progress, desc) -> None:
    from tqdm.auto import tqdm

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
