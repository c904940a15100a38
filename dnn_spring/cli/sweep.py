"""Placeholder for the `sweep` sub-commands; replaced by its owner."""


def add_parser(subparsers) -> None:
    pass
