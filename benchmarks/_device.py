"""The device flags the training benchmarks share (imported by name: the scripts run from here)."""

from __future__ import annotations

import os

from dnn_spring.train._cuda_graphs import ENV_FLAG
from dnn_spring.train._rules import resolve_device


def device_from(parser, args, *, graphs_for_every_trainer: bool = True):
    """``args.device`` resolved (a bad one is the parser's one-line error).

    With ``args.cuda_graphs`` and ``graphs_for_every_trainer``, sets the environment
    flag, so that every trainer this process starts steps from CUDA graphs.
    """
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    if graphs_for_every_trainer and getattr(args, "cuda_graphs", False):
        os.environ[ENV_FLAG] = "1"
    return device
