"""Where a local sweep's tasks run: in this process or in a process pool.

Each executor takes the tasks and one unit of work, ``chunk_fn(task,
**args)`` (by default :func:`dnn_spring.sweep._task.run_task`), and yields
``(task, result)`` as tasks finish; a task whose worker died yields the
exception instead, so the sweep counts its runs as lost.

- :func:`run_inline` (``"debug"``, or one worker): in this process;
- :func:`run_pool` (``"local"``): a ``spawn`` process pool, each worker with
  a fixed number of torch threads (:func:`threads_per_worker`), dying with
  the sweep when it is killed.

The third place a sweep runs, ``"slurm"``, is :mod:`dnn_spring.sweep._slurm`
(one array task per sweep task); the list is :data:`dnn_spring.sweep.EXECUTORS`.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import logging
import multiprocessing
import os
import signal

import torch

from dnn_spring.train._preempt import forward_to, stop_worker_on_signals

__all__ = ["threads_per_worker", "run_inline", "run_pool", "result_or_error"]

logger = logging.getLogger("dnn_spring.sweep._runner")


def _init_worker(threads: int, parent: "int | None" = None) -> None:
    _die_with_parent(parent)
    stop_worker_on_signals()
    torch.set_num_threads(threads)


def _die_with_parent(parent: "int | None" = None) -> None:
    # Linux only: a SIGKILLed sweep takes its workers with it, so they do not
    # keep writing records next to a rerun.
    try:
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


def run_inline(chunks, chunk_fn, args, threads):
    """Run the chunks one after the other here, with ``threads`` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for chunk in chunks:
            yield chunk, chunk_fn(chunk, **args)
    finally:
        torch.set_num_threads(before)


def run_pool(chunks, chunk_fn, args, workers, threads):
    """Run the chunks in ``workers`` spawned processes of ``threads`` torch threads each."""
    context = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                  initargs=(threads, os.getpid()))
    try:
        futures = {pool.submit(chunk_fn, chunk, **args): chunk for chunk in chunks}
        # a stop signal of the sweep goes on to the workers (dnn_spring.train._preempt)
        with forward_to(list(getattr(pool, "_processes", None) or ())):
            for future in cf.as_completed(futures):
                yield futures[future], result_or_error(future.result)
    except BaseException:  # a stop (Preempted, Ctrl-C): start no further chunk
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def result_or_error(get):
    """``get()``, or the exception it raised (a dead worker or job)."""
    try:
        return get()
    except Exception as exc:  # a dead worker or job: its runs stay unfinished
        return exc
