"""The data of a load curve, batch by batch, as the model takes it.

Three kinds of data are read:

- a tensor (or numpy array) of inputs with ``labels=``, cut into chunks of
  ``batch_size``;
- a re-iterable (a DataLoader, a list) of ``(inputs, labels)`` batches;
- a re-iterable of **dict batches**, as Hugging Face models take them
  (``input_ids``, ``attention_mask``, ``labels``, ``pixel_values``, ...).
  The model is called as ``model(**inputs)`` with every entry of the dict
  except ``labels``; ``labels`` gives the classes and ``attention_mask``
  marks the padding.

With ``target="next_token"`` the classes come from the tokens, so a tensor
of token ids needs no labels and a batch may be a plain tensor of ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch

__all__ = ["Batch", "batch_stream", "LABELS", "MASK", "TOKENS"]

#: The dict-batch entries read here: the classes, the padding mask, the token ids.
LABELS, MASK, TOKENS = "labels", "attention_mask", "input_ids"


@dataclass
class Batch:
    """One batch: what the model is called with, and what the classes come from.

    Attributes
    ----------
    inputs : tensor, or dict of model inputs
        A tensor is passed as ``model(inputs)``, a dict as ``model(**inputs)``
        (the dict batch without ``labels``).
    labels : tensor or None
        Shape (N,) (one class per sample) or, for next-token targets,
        (N, T) (-100 for positions without a target).
    entries : dict or None
        The whole dict batch (``labels`` included); None for other data.
    """

    inputs: object
    labels: "torch.Tensor | None"
    entries: "dict | None" = None

    @property
    def mask(self) -> "torch.Tensor | None":
        """The ``attention_mask`` of shape (N, T) (1: a token, 0: padding), or None."""
        return None if self.entries is None else self.entries.get(MASK)

    @property
    def tokens(self) -> "torch.Tensor | None":
        """The token ids of shape (N, T): ``input_ids``, or the input tensor itself."""
        return self.inputs if self.entries is None else self.entries.get(TOKENS)

    def view(self) -> dict:
        """The batch as a callable ``pool`` sees it: the dict batch, or ``{"inputs", "labels"}``."""
        if self.entries is not None:
            return self.entries
        return {"inputs": self.inputs, "labels": self.labels}

    def call(self, model):
        """Run ``model`` on the batch."""
        return model(**self.inputs) if isinstance(self.inputs, dict) else model(self.inputs)

    def to(self, device, dtype) -> "Batch":
        """The batch on ``device``, floating inputs cast to ``dtype`` (None: as they are)."""
        def move(value, cast):
            if not isinstance(value, (torch.Tensor, np.ndarray)):
                return value
            value = torch.as_tensor(value)
            if cast and dtype is not None and value.is_floating_point() and value.dtype != dtype:
                value = value.to(dtype)
            return value.to(device)

        labels = None if self.labels is None else move(torch.as_tensor(self.labels), False)
        if self.entries is None:
            return Batch(move(torch.as_tensor(self.inputs), True), labels)
        entries = {k: move(v, k != LABELS) for k, v in self.entries.items()}
        return Batch({k: v for k, v in entries.items() if k != LABELS}, labels, entries)


def _from_item(item, next_token: bool) -> Batch:
    if isinstance(item, Mapping):
        entries = dict(item)
        if LABELS not in entries and not next_token:
            raise ValueError(f"a dict batch has no {LABELS!r} entry (keys: {sorted(entries)}): with "
                             f"target='label' each dict batch needs {LABELS!r}, one class per sample; "
                             "the model is called with the other entries")
        return Batch({k: v for k, v in entries.items() if k != LABELS}, entries.get(LABELS), entries)
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return Batch(item[0], item[1])
    if next_token and isinstance(item, (torch.Tensor, np.ndarray)):
        return Batch(item, None)
    raise ValueError("each batch must be a pair (inputs, labels) or a dict with 'labels'; "
                     "got data with no labels")


def batch_stream(data, labels, batch_size: int, *, next_token: bool = False) -> Callable[[], Iterable]:
    """A callable yielding fresh :class:`Batch` objects (the data are read more than once).

    Parameters
    ----------
    data : tensor or ndarray of shape (n_samples, ...), or re-iterable of batches
    labels : array-like of shape (n_samples,) or (n_samples, T), optional
        Required with tensor data, unless ``next_token`` (classes from the tokens).
    batch_size : int
        Chunk size for tensor data.
    next_token : bool, default=False
        Classes are the next tokens: labels are optional.
    """
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, torch.Tensor):
        if labels is None and not next_token:
            raise ValueError("data with no labels: pass labels= with a tensor, "
                             "or a DataLoader that yields (inputs, labels)")
        if labels is not None:
            labels = torch.as_tensor(labels)
            if labels.shape[0] != data.shape[0]:
                raise ValueError(f"`data` and `labels` must have the same length, "
                                 f"got {data.shape[0]} and {labels.shape[0]}")
        return lambda: (Batch(data[i:i + batch_size], None if labels is None else labels[i:i + batch_size])
                        for i in range(0, data.shape[0], batch_size))
    if labels is not None:
        raise ValueError("`labels` must be None when `data` yields (inputs, labels) batches")
    if isinstance(data, Mapping) or iter(data) is data:
        raise TypeError("`data` is read twice: pass a tensor, a DataLoader or a list of batches, "
                        "not a one-shot iterator or a single dict")
    return lambda: (_from_item(item, next_token) for item in data)
