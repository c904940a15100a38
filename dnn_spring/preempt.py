"""A polite stop: finish the epoch, save the group's checkpoint, then leave.

A Slurm job that nears its time limit, or is preempted, gets a signal
(``SIGUSR2``, see :mod:`dnn_spring.slurm`).  Stopping a batched group in the
middle of an optimiser step would save a half-updated state, so the signal
only *requests* a stop: :meth:`~dnn_spring.batched.GroupFit.fit` checks
:func:`stop_requested` after every epoch, saves its checkpoint and raises
:class:`Preempted`; :func:`~dnn_spring.chunk.run_chunk` checks it between
groups.  The job then requeues itself and goes on from the checkpoint with
the same numbers.

:func:`checkpointing` marks the stretch of code that honours a request; a
signal outside it (a single run without checkpoints) cannot wait for one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

__all__ = ["Preempted", "request_stop", "stop_requested", "clear_stop", "checkpointing",
           "is_checkpointing", "install_early_handler", "early_signal"]

_STATE = {"requested": False, "depth": 0, "early": None}
#: Where a Slurm task's first lines note a signal that came before dnn_spring was imported.
EARLY_ENV = "DNN_SPRING_EARLY_SIGNAL"


class Preempted(BaseException):
    """Raised where a requested stop was honoured (not an ``Exception``: no handler swallows it)."""


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
    :class:`~dnn_spring.slurm.ChunkJob` then trains until shortly before the
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
    (:func:`dnn_spring.slurm.task_python`) in ``DNN_SPRING_EARLY_SIGNAL``.
    """
    if _STATE["early"] is None and os.environ.get(EARLY_ENV):
        signum, when = os.environ[EARLY_ENV].split()
        return int(signum), float(when)
    return _STATE["early"]


def clear_stop() -> None:
    """Forget a request (a new job starts; a signal noted at start-up is kept)."""
    _STATE["requested"] = False


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
