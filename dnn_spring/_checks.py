"""Argument checks with one message format across the package.

Every message reads ``"`name` must be <rule>, got <value>"``, for example
``"`slope` must be in [0.0, 1.0], got 1.5"`` or ``"`backend` must be one of
{'numpy', 'sdeint'}, got 'julia'"``.  A dataclass collects the problems of
all its fields in a list and raises them at once with :func:`raise_all`
(submitit style: one error names every invalid field); a function checks one
argument with :func:`require`, which raises straight away.
"""

from __future__ import annotations

import math
from dataclasses import fields

__all__ = ["choice_problem", "range_problem", "finite_problems", "raise_all", "require",
           "check_choice", "check_range", "check_items"]


def choice_problem(name: str, value, choices) -> "str | None":
    """The message when ``value`` is not one of ``choices`` (None: it is)."""
    if value in choices:
        return None
    return f"`{name}` must be one of {set(choices)}, got {value!r}"


def range_problem(name: str, value, lo=None, hi=None, *, lo_open: bool = False) -> "str | None":
    """The message when ``value`` is outside ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``).

    ``None`` bounds are open ends.  A non-finite float gives no message here:
    :func:`finite_problems` reports it once.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    ok = True
    if lo is not None:
        ok = value > lo if lo_open else value >= lo
    if hi is not None and ok:
        ok = value <= hi
    if ok:
        return None
    if hi is None:
        rule = f"> {lo}" if lo_open else f">= {lo}"
    else:
        rule = f"in {'(' if lo_open else '['}{lo}, {hi}]"
    return f"`{name}` must be {rule}, got {value!r}"


def finite_problems(obj) -> list:
    """One message per float field of the dataclass ``obj`` that is inf or NaN."""
    return [f"`{f.name}` must be a finite number, got {getattr(obj, f.name)!r}"
            for f in fields(obj)
            if isinstance(getattr(obj, f.name), float) and not math.isfinite(getattr(obj, f.name))]


def raise_all(problems, error=ValueError) -> None:
    """Raise ``error`` with every non-empty message of ``problems`` joined by "; "."""
    problems = [p for p in problems if p]
    if problems:
        raise error("; ".join(problems))


def require(problem: "str | None", error=ValueError) -> None:
    """Raise ``error(problem)`` when there is a problem."""
    if problem:
        raise error(problem)


def check_choice(name: str, value, choices) -> None:
    """Raise ValueError unless ``value`` is one of ``choices``."""
    require(choice_problem(name, value, choices))


def check_range(name: str, value, lo=None, hi=None, *, lo_open: bool = False) -> None:
    """Raise ValueError unless ``value`` is in the range (see :func:`range_problem`)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}")
    require(range_problem(name, value, lo, hi, lo_open=lo_open))


def check_items(name: str, items, kind: type, what: str) -> list:
    """``items`` as a list of at least one ``kind`` object (``what`` names one in messages).

    Raises
    ------
    ValueError
        ``items`` is empty.
    TypeError
        An item is not a ``kind``.
    """
    items = list(items)
    if not items:
        raise ValueError(f"`{name}` must hold at least one {what}, got none")
    for item in items:
        if not isinstance(item, kind):
            raise TypeError(f"`{name}` must hold {kind.__name__} objects, got {type(item).__name__}")
    return items


#: The default of a keyword that was renamed: tells "not passed" from any value.
UNSET = object()


def renamed(old: str, old_value, new: str, new_value):
    """The value of keyword ``new``, taking ``old`` (its name until 0.9) with a warning."""
    if old_value is UNSET:
        return new_value
    import warnings
    warnings.warn(f"`{old}` is now called `{new}`; the old name goes in the next release",
                  DeprecationWarning, stacklevel=3)
    return old_value
