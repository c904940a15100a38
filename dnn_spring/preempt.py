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

__all__ = ["Preempted", "request_stop", "stop_requested", "clear_stop", "checkpointing",
           "is_checkpointing"]

_STATE = {"requested": False, "depth": 0}


class Preempted(BaseException):
    """Raised where a requested stop was honoured (not an ``Exception``: no handler swallows it)."""


def request_stop() -> None:
    """Ask the running group to stop at the end of its epoch."""
    _STATE["requested"] = True


def stop_requested() -> bool:
    """Has a stop been requested?"""
    return _STATE["requested"]


def clear_stop() -> None:
    """Forget a request (a new job starts)."""
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
