"""A batched group's training state on disk, to go on after a kill.

:func:`save_checkpoint` writes the state of a :class:`~dnn_spring.train._group.GroupLoop`
at the end of an epoch (atomically: a kill leaves the old file or the new
one); :func:`resume_checkpoint` reads it back into a fresh fit of the same
group, so the group goes on with the same numbers as an uninterrupted one.
The state holds the loop (epoch, previous losses, divergence counters, the
outcome of retired members) and the stacked model, a
:class:`~dnn_spring.train._group_mlp.GroupMLP` or
:class:`~dnn_spring.train._group_cnn.GroupCNN` (parameters, BatchNorm
statistics, random streams, optimiser).  A file of
another group, of another format or that cannot be read is reported in one
warning and ignored: a bad checkpoint costs time, never the runs.
"""

from __future__ import annotations

import logging

import torch

from dnn_spring._files import write_atomically

__all__ = ["CHECKPOINT_FORMAT", "group_state", "restore_group", "save_checkpoint",
           "resume_checkpoint"]

logger = logging.getLogger("dnn_spring.train._checkpoint")

#: Bumped whenever the layout of the saved state changes.
CHECKPOINT_FORMAT = 3  # 3: 0.6.0, counter-based streams (no generator states)


def group_state(fit) -> dict:
    """Everything needed to go on after ``fit.epoch``, as CPU tensors and plain values."""
    outcome = [{k: ({n: t.detach().cpu() for n, t in v.state_dict().items()}
                    if k == "model" and v is not None else v) for k, v in out.items()}
               for out in fit.outcome]
    return {"format": CHECKPOINT_FORMAT, "keys": [c.key() for c in fit.model.configs],
            "epoch": fit.epoch, "previous": list(fit.previous), "above": list(fit.above),
            "outcome": outcome, **fit.model.state()}


def restore_group(fit, state: dict) -> None:
    """Load a :func:`group_state` of the same group into ``fit``.

    Everything is checked before the first change: a state that does not
    fit raises ValueError (or the error of the part that does not fit) and
    leaves ``fit`` as it was.
    """
    model = fit.model
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"it has format {state.get('format')!r}, not {CHECKPOINT_FORMAT}")
    if state["keys"] != [c.key() for c in model.configs]:
        raise ValueError("it belongs to another group of configs")
    dev = model.device
    outcome = [{**out, "model": model.member_model(c, out["model"]).to(dev)}
               if out.get("model") is not None else out
               for c, out in zip(model.configs, state["outcome"], strict=True)]
    epoch, previous = int(state["epoch"]), list(state["previous"])
    above = [int(a) for a in state["above"]]
    if not len(previous) == len(above) == len(state["ids"]):
        raise ValueError("its loop state does not match its members")
    model.load_state(state)  # checks, then commits
    fit.epoch, fit.previous, fit.above, fit.outcome = epoch, previous, above, outcome
    fit.forget_inputs()


def save_checkpoint(path, fit) -> None:
    """Write ``fit``'s state to ``path`` atomically."""
    state = group_state(fit)
    write_atomically(path, lambda handle: torch.save(state, handle))


def resume_checkpoint(path, fit) -> bool:
    """Go on from the state at ``path`` when there is one that fits; did it?"""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        restore_group(fit, state)
    except FileNotFoundError:
        return False
    except Exception as exc:  # noqa: BLE001 - a bad checkpoint costs time, never the runs
        text = (str(exc).strip().splitlines() or [""])[0]
        logger.warning("ignoring checkpoint %s (%s: %s); training the group from the start",
                       path, type(exc).__name__, text)
        return False
    return True
