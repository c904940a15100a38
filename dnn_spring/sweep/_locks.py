"""Advisory locks that say who holds a results folder or a running group.

A lock is an ``flock`` on a small file: the kernel drops it when its
process ends however it ends (a kill, a crash, a lost node), so no lock is
ever left stale and none needs cleaning up.

- :func:`folder_lock` is held by a local sweep for as long as it runs in a
  results folder.  A second sweep in the same folder refuses at once with
  :class:`FolderBusyError`, whose one line names the folder and the holder's
  process id, instead of training the same runs twice or removing the other
  sweep's checkpoints.
- :func:`held` and :func:`running_lock` mark a batched group that is
  training: the sweep never removes a checkpoint whose group is running,
  in this process, another one, or a Slurm task on a shared file system.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import time
from pathlib import Path

__all__ = ["FolderBusyError", "FOLDER_LOCK", "folder_lock", "exclusive_lock", "running_lock", "held"]

#: The file in a results folder that a running local sweep holds locked.
FOLDER_LOCK = ".sweep.lock"


class FolderBusyError(RuntimeError):
    """Another sweep is running in this results folder."""


def _try_lock(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


@contextlib.contextmanager
def folder_lock(out_dir):
    """Hold ``<out_dir>/.sweep.lock`` for the duration, or raise :class:`FolderBusyError`.

    A folder where the lock file cannot be made (read-only) is not locked:
    the sweep's records go to its fallback file there anyway.
    """
    path = Path(out_dir) / FOLDER_LOCK
    try:
        handle = open(path, "a+")
    except OSError:  # a read-only folder: the sweep goes on and keeps its records elsewhere
        yield None
        return
    with handle:
        if not _try_lock(handle):
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise FolderBusyError(
                f"{out_dir} is in use by another sweep ({holder}); wait for it to end, "
                "or give this one another --out")
        with contextlib.suppress(OSError):  # a full disk: the lock holds without its text
            handle.truncate(0)
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            handle.flush()
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_file(checkpoint) -> Path:
    return Path(checkpoint).with_suffix(".lock")


@contextlib.contextmanager
def exclusive_lock(path, *, remove: bool = False):
    """Hold an exclusive lock on ``path`` (made if missing), waiting for any other holder.

    With ``remove`` the file is deleted before the lock is let go.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            if remove:
                with contextlib.suppress(OSError):
                    path.unlink()
            fcntl.flock(handle, fcntl.LOCK_UN)


def running_lock(checkpoint):
    """Mark the group of ``checkpoint`` as running (its lock file goes when it ends).

    A twin of this group, started elsewhere, waits for the first.
    """
    return exclusive_lock(_lock_file(checkpoint), remove=True)


def held(checkpoint) -> bool:
    """Is the group of ``checkpoint`` training now (its lock held by anyone)?"""
    try:
        handle = open(_lock_file(checkpoint), "r")
    except OSError:  # no lock file: nobody runs it
        return False
    with handle:
        if _try_lock(handle):
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
        return True
