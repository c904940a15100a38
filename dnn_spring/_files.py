"""Files written all or nothing, for records, tables, figures and checkpoints."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path, write) -> None:
    """Create ``path`` (and its folder) with ``write(binary_handle)``, all or nothing.

    The bytes go to a hidden temporary file beside ``path``, are synced, and
    the file is moved into place with ``os.replace``; a kill or an error
    leaves the old file (or none), never half a new one.  The file gets the
    mode ``open()`` would give it (0666 less the umask), not the temporary
    file's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def os_error_text(exc: OSError) -> str:
    """``[Errno 28] No space left on device`` (no file name: the caller names the path)."""
    return f"[Errno {exc.errno}] {exc.strerror}" if exc.errno else f"{type(exc).__name__}: {exc}"
