"""The files a command writes: checked up front, written atomically, never lost.

Every output of ``train``, ``collect``, ``plot`` and ``report`` goes through
:func:`write_output`: the bytes are made first (in memory), then written with
:func:`dnn_spring.sweep._store.write_atomically` (a temporary file beside the
target, moved into place with ``os.replace``), so a full disk or a read-only
folder leaves the old file or none, never half a new one.  When the write
fails the bytes are kept in ``$TMPDIR/dnn-spring-unsaved-<pid>-<name>`` (the
sweep keeps its records in ``$TMPDIR/dnn-spring-unsaved-<pid>.jsonl`` the
same way) and one line says what failed and where the result is.  A command
with several outputs tries every one; it exits 1 when one failed.

:func:`output_path` is the argparse type of every ``--out``-like flag: an
empty name is refused (exit 2) instead of meaning "the default".
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

from dnn_spring._files import os_error_text, write_atomically

__all__ = ["output_path", "check_suffix", "write_output", "figure_bytes", "write_figure"]


def output_path(text: str) -> str:
    """argparse type of an output file flag: any non-empty name."""
    import argparse

    if not str(text).strip():
        raise argparse.ArgumentTypeError("must be a file name, got ''")
    return text


def check_suffix(flag: str, path, suffixes) -> None:
    """Raise ValueError unless ``path`` ends in one of ``suffixes`` (before any work is done)."""
    suffix = Path(str(path)).suffix.lower()
    if suffix not in suffixes:
        raise ValueError(f"`{flag}` must end in one of {', '.join(suffixes)}, got {str(path)!r}")


def figure_suffixes() -> tuple:
    """The file types matplotlib can write, as ``(".png", ".pdf", ...)``."""
    import matplotlib.pyplot as plt

    fig = plt.figure()
    try:
        return tuple(f".{kind}" for kind in sorted(fig.canvas.get_supported_filetypes()))
    finally:
        plt.close(fig)


def _keep(path: Path, data: bytes) -> str:
    """Save ``data`` in the temporary folder; the clause that says where (or why not)."""
    fallback = Path(tempfile.gettempdir()) / f"dnn-spring-unsaved-{os.getpid()}-{path.name}"
    try:
        write_atomically(fallback, lambda handle: handle.write(data))
    except OSError as err:
        return f"could not keep it in {fallback} either ({os_error_text(err)})"
    return f"it was written to {fallback} instead"


def write_output(path, data: bytes, *, command: str, what: str = "file",
                 said: str = "wrote {path}", stdout: bool = False) -> bool:
    """Write ``data`` to ``path`` atomically; on an OS error keep it and say so.

    Prints ``said`` (stderr, or stdout with ``stdout``) on success, else one line
    ``dnn-spring COMMAND: error: could not write WHAT PATH: [Errno ..] ...;
    it was written to FALLBACK instead``.

    Returns
    -------
    bool
        Whether ``path`` was written.
    """
    path = Path(path)
    try:
        write_atomically(path, lambda handle: handle.write(data))
    except OSError as exc:
        print(f"dnn-spring {command}: error: could not write {what} {path}: {os_error_text(exc)}; "
              f"{_keep(path, data)}", file=sys.stderr)
        return False
    print(said.replace("{path}", str(path)), file=sys.stdout if stdout else sys.stderr)
    return True


def figure_bytes(fig, suffix: str) -> bytes:
    """``fig`` as the bytes of a ``suffix`` file, in the package's figure style."""
    from dnn_spring._style import figure_style

    buffer = io.BytesIO()
    with figure_style():
        fig.savefig(buffer, format=suffix.lstrip(".").lower())
    return buffer.getvalue()


def write_figure(fig, out, *, command: str, pdf: bool = False) -> bool:
    """Write ``fig`` to ``out`` (and a PDF beside it with ``pdf``); close it.

    Each file is made and written on its own (:func:`write_output`), so a
    failed PNG does not stop the PDF.  Returns whether every file was written.
    """
    import matplotlib.pyplot as plt

    out = Path(out)
    paths = [out, out.with_suffix(".pdf")] if pdf and out.suffix.lower() != ".pdf" else [out]
    try:
        made = [(path, figure_bytes(fig, path.suffix)) for path in paths]
    finally:
        plt.close(fig)
    ok = [write_output(path, data, command=command, what="figure") for path, data in made]
    return all(ok)
