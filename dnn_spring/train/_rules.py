"""The training rules every trainer shares (docs/science.md#training-and-noise).

The batched trainer (:mod:`dnn_spring.train._group`, MLP and CNN groups; a
single run is a group of one) takes these from here and from
:mod:`dnn_spring.train._rng` (which draws the noise and the order), so a rule is
written once:

* **Randomness** (:func:`member_seeds`): one ``numpy.random.SeedSequence(seed)``
  per run is spawned into independent streams for the initialisation, the
  data order, the noise draws, the dropout masks and the Langevin noise.
  The initialisation draws from a ``torch.Generator``; the others are
  counter-based (:mod:`dnn_spring.train._rng`), keyed by these seeds and
  counted by epoch or step.  The global RNG is never seeded.
* **Label/data noise p** (:func:`dnn_spring.train._rng.epoch_samples`): each sample's label is
  reset, with probability p (Bernoulli per sample, so the fraction is p on
  average), to a class drawn uniformly from all classes (it may hit the true
  one); the input gets Gaussian noise of standard deviation ``p * std(X)``
  where ``std(X)`` is the scalar standard deviation of the whole training
  input.  Draws are fresh for every sample of every epoch, i.e. every step.
* **Epoch order** (also :func:`~dnn_spring.train._rng.epoch_samples`): each epoch visits a fresh
  permutation of the training set in batches of ``batch_size`` (the last
  one smaller).  ``batch_size`` 0 or >= n_train is full batch, in data order.
* **Stopping** (:func:`stop_reason`), checked at the end of each epoch on
  the epoch's mean training loss (sample-weighted over its mini-batches):
  below ``stop_loss`` → ``"loss"``; changed by less than ``stop_delta``
  from the previous epoch → ``"plateau"``.
* **Divergence**: a run is ``"diverged"`` when its epoch loss or any weight
  becomes non-finite, or when its epoch loss stays above
  :data:`DIVERGENCE_FACTOR` (10) × log C, ten times the loss of chance
  prediction, for :data:`DIVERGENCE_PATIENCE` (3) epochs in a row
  (:func:`epochs_above`), in its last epoch or on a plateau.  A diverged
  run is final: it is never retried.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["STREAMS", "member_seeds", "resolve_device", "stop_reason", "epochs_above",
           "DIVERGENCE_FACTOR", "DIVERGENCE_PATIENCE"]

#: The random streams of one run, in the order they are spawned.
STREAMS = ("init", "order", "noise", "dropout", "langevin")
#: A run whose epoch loss stays above this many times the loss of chance
#: prediction, log C, has blown up (see :func:`stop_reason`).
DIVERGENCE_FACTOR = 10.0
#: ... for this many epochs in a row (or in its last epoch).
DIVERGENCE_PATIENCE = 3


def member_seeds(seed: int) -> dict:
    """Independent 64-bit seeds for each random stream of one run.

    Returns ``{stream: int}`` for the streams ``init``, ``order``, ``noise``,
    ``dropout`` and ``langevin``, spawned from ``SeedSequence(seed)``.
    """
    children = np.random.SeedSequence(int(seed)).spawn(len(STREAMS))
    return {name: int(c.generate_state(1, dtype=np.uint64)[0]) for name, c in zip(STREAMS, children)}


def resolve_device(device) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` or a torch.device → torch.device.

    Raises
    ------
    ValueError
        Unknown device name, or CUDA asked for but not available.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"`device` must be 'cpu', 'cuda' or 'auto', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`device` must be 'cpu' or 'auto' (CUDA is not available here), "
                         f"got {device!r}")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"`device` must be 'cpu', 'cuda' or 'auto', got {device!r}")
    return dev


def epochs_above(count: int, mean: float, n_classes: int) -> int:
    """Epochs in a row with a loss above ``DIVERGENCE_FACTOR · log C``, after this one."""
    return count + 1 if mean > DIVERGENCE_FACTOR * math.log(n_classes) else 0


def stop_reason(mean: float, previous: "float | None", train, *, finite: bool = True,
                epochs_above: int = 0, last: bool = False) -> "str | None":
    """Per-epoch stopping rule of docs/science.md#training-and-noise, with divergence (None: go on).

    ``"diverged"`` when the epoch's mean loss or any weight is non-finite
    (``finite=False``), or when the loss has been above
    ``DIVERGENCE_FACTOR · log C`` for ``epochs_above >= DIVERGENCE_PATIENCE``
    epochs in a row, or still is in the last epoch (``last``), or sits there
    on a plateau.  Otherwise ``"loss"`` below ``train.stop_loss`` and
    ``"plateau"`` when the loss changed by less than ``train.stop_delta``.
    """
    if not (math.isfinite(mean) and finite):
        return "diverged"
    plateau = previous is not None and abs(mean - previous) < train.stop_delta
    if epochs_above and (epochs_above >= DIVERGENCE_PATIENCE or last or plateau):
        return "diverged"
    if epochs_above:
        return None
    if mean < train.stop_loss:
        return "loss"
    return "plateau" if plateau else None
