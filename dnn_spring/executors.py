"""Where a sweep's chunks run: inline, in a process pool, or as Slurm jobs.

Each executor takes the chunks and one unit of work, ``chunk_fn(chunk,
**args)`` (by default :func:`dnn_spring.chunk.run_chunk`), and yields
``(chunk, result)`` as chunks finish; a chunk whose worker or job died
yields the exception instead, so the sweep counts its runs as lost.

- :func:`run_inline` (``"debug"``, or one worker): in this process;
- :func:`run_pool` (``"local"``): a ``spawn`` process pool, each worker with
  a fixed number of torch threads (:func:`threads_per_worker`), dying with
  the sweep when it is killed;
- :func:`run_slurm` (``"slurm"``): one submitit job per chunk (a job array),
  logs in ``<out_dir>/.submitit``.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import logging
import multiprocessing
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import torch

from .records import RecordWriteError

__all__ = ["EXECUTORS", "SlurmOptions", "threads_per_worker", "run_inline", "run_pool",
           "run_slurm"]

logger = logging.getLogger("dnn_spring.sweep")

EXECUTORS = ("local", "debug", "slurm")


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


def _init_worker(threads: int, parent: "int | None" = None) -> None:
    _die_with_parent(parent)
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
    with cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                initargs=(threads, os.getpid())) as pool:
        futures = {pool.submit(chunk_fn, chunk, **args): chunk for chunk in chunks}
        for future in cf.as_completed(futures):
            yield futures[future], _result_or_error(future.result)


def _chunk_job(chunk_fn, chunk, **args):
    # submitit turns a job's exception into a FailedJobError holding a traceback;
    # a RecordWriteError comes back as the result, with its one-line messages.
    try:
        return chunk_fn(chunk, **args)
    except RecordWriteError as exc:
        return exc


def run_slurm(chunks, chunk_fn, args, options: SlurmOptions):
    """Submit one Slurm job per chunk (through submitit) and wait for them."""
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
        jobs = [executor.submit(_chunk_job, chunk_fn, chunk, **args) for chunk in chunks]
    chunk_of = {id(job): chunk for job, chunk in zip(jobs, chunks)}
    logger.info("submitted %d jobs, logs in %s", len(jobs), executor.folder)
    for job in submitit.helpers.as_completed(jobs, poll_frequency=5):
        yield chunk_of[id(job)], _result_or_error(job.result)


def _result_or_error(get):
    try:
        return get()
    except Exception as exc:  # a dead worker or job: its runs stay unfinished
        return exc
