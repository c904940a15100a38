"""Counting a batched step's operators and an epoch's host reads (shared by the trainer tests).

Imported by ``tests/train/test_rng.py`` and ``tests/train/test_group_cnn.py``.
"""

from collections import Counter

import torch
from torch.profiler import ProfilerActivity, profile

#: Profiler events that read a tensor on the host.
SYNCS = ("aten::_local_scalar_dense", "aten::item")


def events(fn) -> list:
    """The ``aten::`` profiler events of ``fn()`` (nested ones included)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return [e for e in prof.events() if e.name.startswith("aten::")]


def inside(event, name: str) -> bool:
    """Is ``event`` inside an operator called ``name`` (or that operator itself)?"""
    while event is not None:
        if event.name == name:
            return True
        event = event.cpu_parent
    return False


def epoch_reads(fit, monkeypatch) -> tuple:
    """Run one epoch of ``fit`` (a GroupLoop): (its profiler events, Python-side tensor reads).

    The reads count calls of ``Tensor.item``, ``tolist``, ``__bool__``,
    ``__float__`` and ``__int__`` during the epoch and its end-of-epoch read.
    """
    reads = Counter()
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _name=name, _original=original, **k):
            reads[_name] += 1
            return _original(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, counted)
    found = events(lambda: fit.read_epoch(fit.run_epoch()))
    monkeypatch.undo()
    return found, reads


def syncs_outside_fused_adam(found: list) -> list:
    """Host reads other than the fused Adam's CPU kernel reading its CPU step count."""
    return [e for e in found if e.name in SYNCS and not inside(e, "aten::_fused_adam_")]
