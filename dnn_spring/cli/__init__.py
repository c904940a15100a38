"""The ``dnn-spring`` command line: one sub-command module per concern.

Each module in this package exposes ``add_parser(subparsers)``, which adds its
sub-commands and sets ``func`` on them.  ``main`` turns every expected error
(bad values, missing or unreadable files) into one line on stderr and exit
status 2.  A closed stdout (``dnn-spring ... | head``) ends the command
quietly, with exit status 1 as Python itself uses for it.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main", "build_parser"]

_COMMAND_MODULES = ("train", "sweep", "status", "diagnose", "report", "spring", "fit")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (sub-parsers inherit it)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the full argument parser with every sub-command registered."""
    import importlib

    from dnn_spring._version import __version__

    parser = _Parser(
        prog="dnn-spring",
        description="Load curves, phase diagrams and spring-block chains "
        "(spring-block theory of feature learning in deep nets).",
    )
    parser.add_argument("--version", action="version", version=f"dnn-spring {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"dnn_spring.cli.{name}").add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    """Entry point of ``dnn-spring``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
    except BrokenPipeError:
        # The Python docs' recipe: later writes (and the flush at exit) go to devnull.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, TypeError, OSError, KeyError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"dnn-spring {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dnn-spring {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
