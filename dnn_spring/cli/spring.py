"""Placeholder for the `spring` sub-commands; replaced by its owner."""


def add_parser(subparsers) -> None:
    pass
