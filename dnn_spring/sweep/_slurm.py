"""Sweeps on a Slurm cluster: submit and return, follow the queue, requeue at time limits.

A Slurm sweep (:func:`dnn_spring.sweep._runner.run_sweep` with ``executor="slurm"``)
submits its unfinished configs as **one job array** through submitit, one
task per chunk, each task training its chunk as batched groups.  It then
returns (``wait=False``) or follows the tasks until they leave the queue
(``wait=True``).

Bookkeeping lives in the results folder:

- ``.slurm/jobs.jsonl``: one line per submitted task, ``{"job_id": "123_4",
  "keys": [...], "stdout": ..., "stderr": ..., "submitted": unix time}``;
- ``.submitit/``: submitit's pickles and the tasks' logs.

:mod:`dnn_spring.sweep._slurm_status` follows the tasks and reports a folder's status.

Submitting again runs only what is missing: under a lock on the folder, the
configs with a finished record are skipped, and so are those of every task
the queue (``squeue``) still holds, pending, running or requeued, so a chunk
is never queued twice.  The queue is read with ``squeue`` and progress with
the records, never with ``sacct``: a cluster without accounting works the
same, without warnings.

Time limits and preemption: each task is a
:class:`submitit.helpers.Checkpointable` (:class:`TaskJob`).  Slurm sends
``SIGUSR2`` ``signal_delay_s`` seconds before the time limit (and on
preemption where the cluster is set up so); the task then finishes its
epoch, saves its batched group's checkpoint (:mod:`dnn_spring.train._preempt`) and
submitit requeues it, up to 3 times for time limits.  The requeued task
skips the runs whose records exist and goes on from the checkpoint, so its
numbers equal an uninterrupted run's.  A cancelled task loses only the runs
it had not finished.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import submitit
import torch

from dnn_spring.sweep._locks import exclusive_lock
from dnn_spring.train._preempt import Preempted, clear_stop, early_signal, is_checkpointing, request_stop
from dnn_spring.sweep._store import RecordWriteError

__all__ = ["SlurmOptions", "TaskJob", "submit_tasks", "live_tasks", "queue_states",
           "read_manifest", "MANIFEST", "FINAL_STATES", "is_alive", "require_slurm", "MAX_ARRAY",
           "submission_lock"]

logger = logging.getLogger("dnn_spring.sweep._runner")

#: Where a results folder lists its submitted tasks.
MANIFEST = Path(".slurm") / "jobs.jsonl"
#: Queue states after which a task writes nothing more; any other state squeue lists is alive.
FINAL_STATES = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL",
                "DEADLINE", "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "GONE", "UNKNOWN")
# sbatch flags submitit and requeueing rely on: not to be overridden by --sbatch.
_RESERVED = {"time", "signal", "array", "output", "error", "open_mode", "job_name", "wrap",
             "requeue", "no_requeue", "parsable"}
#: Most tasks in one job array (Slurm's default MaxArraySize is 1001).
MAX_ARRAY = 1000
#: After a signal that came while the task started, stop training this long before its end.
EARLY_MARGIN_S = 25


def is_alive(state) -> bool:
    """Is a task in this queue state (None: not in the queue) still to write records?"""
    return state is not None and state not in FINAL_STATES


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of each array task (one per chunk), passed to submitit.

    Attributes
    ----------
    partition, qos, account : str, optional
        ``--partition``, ``--qos``, ``--account`` (cluster default when None).
    time_min : int, default=240
        Time limit per task, minutes.
    gpus, cpus : int, default 0 and 2
        GPUs and CPUs per task.
    mem_gb : float, optional
        Memory per task (cluster default when None).
    parallel : int, default=64
        Most tasks of the array running at once (``--array=...%parallel``).
    extra : tuple of str, default=()
        Further ``sbatch`` flags as ``"KEY=VALUE"`` (e.g. ``"constraint=a100"``).
    signal_delay_s : int, default=120
        Seconds before the time limit at which the task is told to checkpoint.
    max_requeues : int, default=3
        Most times a task requeues itself at its time limit (submitit's
        ``max_num_timeout``); then it ends, and its unfinished runs are missing.
    poll_s : float, default=10
        Seconds between two looks at the queue when following a sweep.
    cluster : str, optional
        None: Slurm when ``sbatch`` exists, else submitit's local executor;
        ``"local"`` or ``"debug"`` force those (tests).
    """

    partition: "str | None" = None
    time_min: int = 240
    gpus: int = 0
    cpus: int = 2
    mem_gb: "float | None" = None
    parallel: int = 64
    qos: "str | None" = None
    account: "str | None" = None
    extra: tuple = ()
    signal_delay_s: int = 120
    max_requeues: int = 3
    poll_s: float = 10.0
    cluster: "str | None" = None

    def parameters(self) -> dict:
        """The submitit parameters of these options (``ValueError``: a flag Slurm would take
        but the task could not work with)."""
        if self.signal_delay_s >= 60 * self.time_min:
            raise ValueError(f"`--signal-delay` must be shorter than the time limit "
                             f"({60 * self.time_min} s), got {self.signal_delay_s} s: every "
                             "task would be told to stop as it starts")
        params = {"timeout_min": int(self.time_min), "cpus_per_task": int(self.cpus),
                  "gpus_per_node": int(self.gpus), "slurm_array_parallelism": int(self.parallel),
                  "slurm_signal_delay_s": int(self.signal_delay_s)}
        extra = {}
        for item in self.extra:
            name, sep, value = str(item).partition("=")
            name = name.strip().lstrip("-").replace("-", "_")
            if not sep or not name:
                raise ValueError(f"an extra sbatch flag must be KEY=VALUE (KEY= for a bare flag), "
                                 f"got {item!r}")
            if name in _RESERVED:
                raise ValueError(f"sbatch flag --{name.replace('_', '-')} is set by dnn-spring "
                                 f"(use --time, --signal-delay, ...), not through --sbatch")
            extra[name] = value.strip() or True  # KEY= : a flag without a value
        for key, value in (("partition", self.partition), ("qos", self.qos),
                           ("account", self.account)):
            if value:
                params[f"slurm_{key}"] = value
        if self.mem_gb:
            params["mem_gb"] = self.mem_gb
        if extra:
            params["slurm_additional_parameters"] = extra
        return params


class TaskJob(submitit.helpers.Checkpointable):
    """One array task: ``chunk_fn(chunk, **args)``, requeued from its checkpoint on ``SIGUSR2``.

    On the signal a checkpointing group is asked to stop at the end of its
    epoch; anywhere else (a run trained alone, an evaluation) the task stops
    at once.  Should the group not reach its epoch's end within
    ``signal_delay_s - 20`` seconds (an epoch longer than that, or the
    signal came in its last epoch), a ``SIGALRM`` stops it there, so the task
    is always requeued before Slurm kills it.  The requeued task skips the
    groups whose records exist (:func:`~dnn_spring.sweep._task.run_task`).

    A signal that came while the task was starting, before any handler
    existed (:func:`~dnn_spring.train._preempt.install_early_handler`), gave the
    task ``signal_delay_s`` from then: it trains until :data:`EARLY_MARGIN_S`
    seconds are left, stops at the end of that epoch, and requeues (at once,
    before training, when less is left).
    """

    def __init__(self, signal_delay_s: int = 120):
        self.signal_delay_s = int(signal_delay_s)

    def __call__(self, chunk_fn, chunk, **args):
        clear_stop()
        torch.set_num_threads(task_threads())
        requeue = signal.getsignal(signal.SIGUSR2)
        if callable(requeue):  # submitit's handler: checkpoint(), scontrol requeue, exit
            signal.signal(signal.SIGUSR2, self._on_signal)
            signal.signal(signal.SIGALRM, _stop_now)
        timer = None
        try:
            if early_signal() is not None and callable(requeue):
                timer = self._after_early_signal(*early_signal())
            return chunk_fn(chunk, **args)
        except RecordWriteError as exc:  # comes back as the result, with its one-line messages
            return exc
        except Preempted as exc:
            logger.warning("%s; requeueing", exc)
            signal.alarm(0)
            if callable(requeue):
                requeue(signal.SIGUSR2, None)
            raise
        finally:
            signal.alarm(0)
            if timer is not None:
                timer.cancel()

    def _after_early_signal(self, signum, when):
        """Schedule the stop that a signal at ``when`` (monotonic s), before the handlers, asks for."""
        left = self.signal_delay_s - (time.monotonic() - when)
        if left <= EARLY_MARGIN_S:
            raise Preempted(f"got signal {signum} while the task was starting, {left:.0f} s "
                            "before its end: requeueing it before it trains")
        logger.warning("got signal %d while the task was starting: training for %.0f s more, "
                       "then requeueing", signum, left - EARLY_MARGIN_S)
        timer = threading.Timer(left - EARLY_MARGIN_S, request_stop)  # at an epoch's end
        timer.daemon = True
        timer.start()
        signal.alarm(max(1, int(left) - 20))  # as after a signal in training: the hard stop
        return timer

    def _on_signal(self, signum, frame):
        if not is_checkpointing():
            _stop_now(signum, frame)
        logger.warning("got signal %d: stopping at the end of the epoch", signum)
        request_stop()
        signal.alarm(max(1, self.signal_delay_s - 20))


def _stop_now(signum, frame):
    raise Preempted(f"got signal {signum} outside a checkpointing group: stopping now")


# Run before submitit (or torch) loads in a task: note a SIGUSR2 in the environment, where
# dnn_spring.train._preempt.early_signal finds it, then run submitit's own entry point.
_BOOT = ('import os, signal, sys, time, runpy; '
         'signal.signal(signal.SIGUSR2, lambda signum, frame: os.environ.setdefault('
         '"DNN_SPRING_EARLY_SIGNAL", "%d %r" % (signum, time.monotonic()))); '
         'sys.argv = ["submitit", sys.argv[-1]]; '
         'runpy.run_module("submitit.core._submit", run_name="__main__", alter_sys=True)')


def task_python() -> str:
    """The command a Slurm task starts Python with: this interpreter, unbuffered, running a
    few lines that install a minimal ``SIGUSR2`` handler before submitit's entry point
    (:func:`~dnn_spring.train._preempt.early_signal`); submitit appends its own arguments."""
    return f"{shlex.quote(sys.executable)} -u -c {shlex.quote(_BOOT)}"


def task_threads() -> int:
    """Torch threads of a task: its CPUs (``SLURM_CPUS_PER_TASK``) in a Slurm task, else
    ``OMP_NUM_THREADS`` if set, else torch's default.  Records store the count."""
    for name in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return torch.get_num_threads()


# --------------------------------------------------------------------------- manifest

def submission_lock(out_dir):
    """Hold an exclusive lock on ``out_dir`` while a sweep decides what to submit."""
    return exclusive_lock(Path(out_dir) / MANIFEST.parent / "lock")


def read_manifest(out_dir) -> list:
    """The submitted tasks of ``out_dir`` (a later line for the same task id wins)."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return []
    tasks = {}
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill: that task is not known
            continue
        if isinstance(entry, dict) and isinstance(entry.get("job_id"), str):
            tasks[entry["job_id"]] = entry
    return list(tasks.values())


def _append_manifest(out_dir, entries) -> None:
    path = Path(out_dir) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write("".join(json.dumps(e) + "\n" for e in entries))


def queue_states(job_ids=None) -> "dict | None":
    """``{task id: state}`` of this user's tasks in the Slurm queue; None without ``squeue``.

    Array tasks are listed one by one (``123_4``); a task that left the
    queue is absent.  ``job_ids`` limits the answer to those ids.
    """
    if shutil.which("squeue") is None:
        return None
    cmd = ["squeue", "-h", "-r", "-u", str(os.getuid()), "-o", "%i %T"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        raise OSError(f"squeue failed: {getattr(exc, 'stderr', '') or exc}".strip()) from None
    states = dict(line.split()[:2] for line in out.splitlines() if len(line.split()) >= 2)
    if job_ids is not None:
        wanted = set(job_ids)
        states = {k: v for k, v in states.items() if k in wanted}
    return states


def live_tasks(out_dir) -> list:
    """The manifest entries of the submitted tasks the queue still holds."""
    tasks = read_manifest(out_dir)
    if not tasks:
        return []
    states = queue_states([t["job_id"] for t in tasks]) or {}
    return [t for t in tasks if is_alive(states.get(t["job_id"]))]


def require_slurm(options: SlurmOptions) -> None:
    """Refuse a Slurm sweep on a machine without ``sbatch`` and ``squeue`` (one line)."""
    if options.cluster is None and not (shutil.which("sbatch") and shutil.which("squeue")):
        raise ValueError("`--executor slurm` needs Slurm's sbatch and squeue on this machine "
                         "(run it on the cluster's login node); they are not on PATH")


def submit_tasks(chunks, chunk_fn, args, options: SlurmOptions) -> list:
    """Submit ``chunks`` as job arrays of at most :data:`MAX_ARRAY` tasks.

    Returns ``(job, chunk, manifest entry)`` per chunk; the entries are also
    appended to the manifest.  A refused submission is an ``OSError`` with
    sbatch's first line.
    """
    out_dir = Path(args["out_dir"])
    kwargs = ({"slurm_max_num_timeout": int(options.max_requeues), "slurm_python": task_python()}
              if options.cluster is None else {})
    executor = submitit.AutoExecutor(folder=out_dir / ".submitit", cluster=options.cluster, **kwargs)
    executor.update_parameters(**options.parameters())
    submitted = []
    for start in range(0, len(chunks), MAX_ARRAY):
        part = chunks[start:start + MAX_ARRAY]
        try:
            with executor.batch():
                jobs = [executor.submit(TaskJob(options.signal_delay_s), chunk_fn, chunk, **args)
                        for chunk in part]
        except Exception as exc:  # noqa: BLE001 - submitit raises several kinds
            text = (str(exc).strip().splitlines() or [type(exc).__name__])
            lines = [x for x in text if "error" in x.lower()] or text
            raise OSError(f"sbatch failed: {lines[0].strip()}") from None
        now = time.time()
        entries = [{"job_id": str(job.job_id), "keys": [c.key() for c in chunk],
                    "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr),
                    "submitted": now} for job, chunk in zip(jobs, part)]
        _append_manifest(out_dir, entries)
        submitted += list(zip(jobs, part, entries))
    return submitted
