"""A polite stop: finish the epoch, save the group's checkpoint, then leave.

A Slurm job that nears its time limit, or is preempted, gets a signal
(``SIGUSR2``, see :mod:`dnn_spring.sweep._slurm`).  Stopping a batched group in the
middle of an optimiser step would save a half-updated state, so the signal
only *requests* a stop: :meth:`~dnn_spring.train._group.GroupLoop.fit` checks
:func:`stop_requested` after every epoch, saves its checkpoint and raises
:class:`Preempted`; :func:`~dnn_spring.sweep._task.run_task` checks it between
groups.  The job then requeues itself and goes on from the checkpoint with
the same numbers.

:func:`checkpointing` marks the stretch of code that honours a request; a
signal outside it (a single run without checkpoints) cannot wait for one.

A local sweep stops the same way on ``SIGTERM`` (what Slurm, ``kill`` and
most schedulers send) and ``SIGINT`` (Ctrl-C): :func:`stop_on_signals` in the
sweep's process, and :func:`stop_worker_on_signals` in each pool worker (the
sweep forwards the signal to its workers, :func:`forward_to`).  The running
group saves its checkpoint at the end of its epoch and the sweep ends with
:class:`Preempted`; a second signal to the sweep stops it at once
(``KeyboardInterrupt``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

__all__ = ["Preempted", "request_stop", "stop_requested", "clear_stop", "checkpointing",
           "is_checkpointing", "install_early_handler", "early_signal", "stop_on_signals",
           "stop_worker_on_signals", "forward_to", "STOP_SIGNALS"]

_STATE = {"requested": False, "depth": 0, "early": None, "signal": None}
#: Where a Slurm task's first lines note a signal that came before dnn_spring was imported.
EARLY_ENV = "DNN_SPRING_EARLY_SIGNAL"
#: The signals a local sweep stops on politely.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Processes (pool workers) a stop signal is passed on to.
_FORWARD: set = set()


class Preempted(BaseException):
    """Raised where a requested stop was honoured (not an ``Exception``: no handler swallows it).

    ``signum`` is the signal that asked for it, when one did.
    """

    def __init__(self, message: str = "", signum: "int | None" = None):
        super().__init__(message)
        self.signum = signum

    def __reduce__(self):  # it travels back from pool workers
        return type(self), (str(self), self.signum)


def request_stop() -> None:
    """Ask the running group to stop at the end of its epoch."""
    _STATE["requested"] = True


def stop_requested() -> bool:
    """Has a stop been requested?"""
    return _STATE["requested"]


def install_early_handler() -> None:
    """In a submitit task, remember a ``SIGUSR2`` that comes before the job's handlers exist.

    submitit loads a task's pickled job (which imports torch: seconds) before
    it installs its own handler; a time-limit signal in that window would end
    the task with the signal's default action and lose its runs.  This
    handler only notes the signal and its time (:func:`early_signal`);
    :class:`~dnn_spring.sweep._slurm.TaskJob` then trains until shortly before the
    time the signal announced, and requeues.  Installed at ``import dnn_spring`` when ``SUBMITIT_FOLDER`` is
    set (submitit sets it before loading the job) and nothing else handles
    the signal.
    """
    if "SUBMITIT_FOLDER" not in os.environ or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL:
        signal.signal(signal.SIGUSR2, _note_early)


def _note_early(signum, frame) -> None:
    if _STATE["early"] is None:
        _STATE["early"] = (signum, time.monotonic())


def early_signal() -> "tuple | None":
    """``(signal, time.monotonic() when it came)`` of a signal that came before the job's
    handlers were installed, or None.

    Noted here, or by the few lines a Slurm task starts with
    (:func:`dnn_spring.sweep._slurm.task_python`) in ``DNN_SPRING_EARLY_SIGNAL``.
    """
    if _STATE["early"] is None and os.environ.get(EARLY_ENV):
        signum, when = os.environ[EARLY_ENV].split()
        return int(signum), float(when)
    return _STATE["early"]


def clear_stop() -> None:
    """Forget a request (a new job starts; a signal noted at start-up is kept)."""
    _STATE["requested"] = False
    _STATE["signal"] = None


def stop_signal() -> "int | None":
    """The signal that requested the stop, if one did."""
    return _STATE["signal"]


@contextlib.contextmanager
def forward_to(pids):
    """Pass a stop signal of this process on to ``pids`` while the block runs."""
    pids = set(pids)
    _FORWARD.update(pids)
    try:
        yield
    finally:
        _FORWARD.difference_update(pids)


def _forward(signum) -> None:
    for pid in list(_FORWARD):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals():
    """Turn SIGTERM and SIGINT into a polite stop while the block runs (a local sweep).

    The first signal asks the running group to save its checkpoint and stop
    (:func:`request_stop`), passes the request on to the workers
    (:func:`forward_to`), and, where nothing checkpoints (a run trained
    alone), raises :class:`Preempted` at once.  A second signal raises
    ``KeyboardInterrupt``.  The old handlers come back afterwards.
    """
    def handler(signum, frame):
        if _STATE["signal"] is not None:
            raise KeyboardInterrupt
        _STATE["signal"] = signum
        request_stop()
        _forward(signum)
        if not is_checkpointing() and not _FORWARD:
            raise Preempted(f"got {signal.Signals(signum).name}: stopped", signum)

    import threading

    if threading.current_thread() is not threading.main_thread():  # signals go to the main one
        yield
        return
    old = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
        clear_stop()


def stop_worker_on_signals() -> None:
    """In a pool worker: a stop signal asks its group to checkpoint and stop.

    Where nothing checkpoints, the worker stops at once (:class:`Preempted`);
    a repeated signal changes nothing (the sweep forwards the terminal's
    Ctrl-C too).
    """
    def handler(signum, frame):
        if _STATE["signal"] is not None:
            return
        _STATE["signal"] = signum
        request_stop()
        if not is_checkpointing():
            raise Preempted(f"got {signal.Signals(signum).name}: stopped", signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)


def is_checkpointing() -> bool:
    """Is code running that checks :func:`stop_requested` at least once per epoch?"""
    return _STATE["depth"] > 0


@contextlib.contextmanager
def checkpointing():
    """Mark a block that saves a checkpoint and raises :class:`Preempted` on request."""
    _STATE["depth"] += 1
    try:
        yield
    finally:
        _STATE["depth"] -= 1
