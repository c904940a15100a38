"""From a module's output to one feature row per sample: outputs, token pooling, next tokens.

**Which tensor.** A module output that is a tensor is used as is; a tuple,
list, dict or Hugging Face ``ModelOutput`` (a dict) gives its first tensor
(depth first, ``None`` entries skipped).  ``output=callable(name, output) ->
tensor`` picks it otherwise (``name``: the point's name).

**Pooling** (``pool=``) acts on *sequence* outputs, the 3-D tensors of shape
(N, T, d) with the samples first and the T tokens on axis 1 (a transformer
block with ``batch_first=True``, every Hugging Face model).  Every other
shape, (N, p) or images (N, C, H, W), is flattened per sample whatever
``pool`` says: one sample, one row, as before.

- ``"flatten"`` (the default): the T·d numbers of a sequence side by side.
  One warning per measurement names the sequence points wider than
  :data:`POOL_WARN_WIDTH` columns, where a pooled (N, d) row is the better
  choice: a flattened row grows with the sequence length, and a probe set
  of a few thousand sequences has fewer samples than columns there.
- ``"mean"``: the mean over the tokens, over the tokens whose
  ``attention_mask`` is 1 when the batch has one.
- ``"first"``: the first token (CLS); with a mask, the first one whose mask
  is 1 (the same under right padding).
- ``"last"``: the last token; with a mask, the last one whose mask is 1.
- ``callable(name, output, batch) -> (N, p) tensor``: ``output`` the picked
  tensor, ``batch`` the dict batch on the device (``{"inputs", "labels"}``
  for other data).

**Next tokens** (``target="next_token"``): for a causal language model every
(sequence, position t) with a valid next token is one sample, its class the
token at t + 1 (``labels[:, t + 1]`` when the batch has ``labels``, else
``input_ids[:, t + 1]``), its features the layer's output at t; pooling does
not apply.  A position is skipped when the mask is 0 at t or t + 1, when the
label at t + 1 is negative (-100), or when its class is not kept by
``max_classes``.  Each layer's class sums take O(p·C) memory (C: the next
tokens that occur); when about 3 float64 C×p matrices per point (the sums,
the means and the centred means) would exceed ``class_bytes``
(:data:`NEXT_TOKEN_BYTES`, 4 GiB, over all points), the measurement stops
with one line giving the estimate and the ``max_classes`` that fits:
``max_classes=K`` keeps the K most frequent next tokens (ties: the smaller
id) and skips the other positions.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from numbers import Integral

import torch

from dnn_spring._checks import check_choice
from dnn_spring.metrics._distributed import merge_class_rows

__all__ = ["POOLS", "TARGETS", "POOL_WARN_WIDTH", "NEXT_TOKEN_BYTES", "check_pooling",
           "pick_tensor", "Featurizer", "count_next_tokens", "kept_tokens", "check_class_budget",
           "warn_wide"]

POOLS = ("flatten", "mean", "first", "last")
TARGETS = ("label", "next_token")
#: A flattened sequence output (N, T, d) wider than this (T·d) draws the pooling warning.
POOL_WARN_WIDTH = 16384
#: Default budget in bytes for the next-token class statistics of all points together.
NEXT_TOKEN_BYTES = 4 * 2**30
# Float64 C×p matrices a point keeps: class sums, class means, centred means.
_CLASS_COPIES = 3


def check_pooling(pool, target, output=None, max_classes=None) -> None:
    """One ``ValueError``/``TypeError`` for a bad ``pool``, ``target``, ``output`` or ``max_classes``."""
    check_choice("target", target, TARGETS)
    if not callable(pool) and not (isinstance(pool, str) and pool in POOLS):
        raise ValueError(f"`pool` must be one of {', '.join(map(repr, POOLS))} or a "
                         f"callable(name, output, batch) -> (N, p) tensor, got {pool!r}")
    if target == "next_token" and pool != "flatten":
        raise ValueError(f"`pool` must be 'flatten' (the default) with target='next_token', where "
                         f"every token position is a sample, got {pool!r}")
    if output is not None and not callable(output):
        raise TypeError(f"`output` must be None or a callable(name, output) -> tensor, got {output!r}")
    if max_classes is not None and (target != "next_token" or isinstance(max_classes, bool)
                                    or not isinstance(max_classes, Integral) or max_classes < 2):
        raise ValueError(f"`max_classes` must be an integer >= 2 with target='next_token', got "
                         f"{max_classes!r} with target={target!r}")


def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):
        value = value.values()
    elif not isinstance(value, (tuple, list)):
        return None
    for item in value:
        found = _first_tensor(item)
        if found is not None:
            return found
    return None


def pick_tensor(value, name: str, output=None) -> torch.Tensor:
    """The tensor of a module's output ``value``: ``output(name, value)`` or its first tensor."""
    if output is not None:
        tensor = output(name, value)
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"`output` returned {type(tensor).__name__} at layer {name!r}, not a tensor")
        return tensor
    tensor = _first_tensor(value)
    if tensor is None:
        raise TypeError(f"layer {name!r} returned {type(value).__name__} with no tensor in it; "
                        "pass output=callable(name, output) -> tensor to pick one")
    return tensor


def _fresh64(x: torch.Tensor) -> torch.Tensor:
    """A float64 copy of shape (N, p): later in-place changes of the model's tensors cannot reach it."""
    x = x.detach().flatten(1)
    return x.clone() if x.dtype == torch.float64 else x.to(torch.float64)


class Featurizer:
    """Per batch, turn each point's output into ``(features (M, p) float64, classes (M,))``.

    Call :meth:`start` with each batch before the model runs on it.
    """

    def __init__(self, pool="flatten", target="label", output=None, keep=None, *,
                 project=None, seed=0):
        self.pool, self.target, self.output = pool, target, output
        self.keep = keep  # next-token classes kept (None: all)
        self.project, self.seed = project, int(seed)
        self._projections: dict = {}  # width -> (width, project) matrix
        self.wide: dict = {}  # flattened sequence points wider than POOL_WARN_WIDTH: width
        self._batch = self._y = self._valid = None

    def start(self, batch) -> None:
        """Read the batch's classes (and, for next tokens, which positions are samples)."""
        self._batch = batch
        if self.target == "label":
            y = batch.labels
            if y is not None and y.ndim > 1 and batch.entries is not None:
                raise ValueError(f"dict batch 'labels' has shape {tuple(y.shape)}: target='label' "
                                 "needs one class per sample; a language model's token labels "
                                 "go with target='next_token'")
            self._y = y
            return
        self._valid, self._y = next_token_targets(batch, self.keep)

    def __call__(self, name: str, value):
        feats, y = self._features(name, value)
        if self.project is None or feats.shape[1] <= self.project:
            return feats, y
        width = feats.shape[1]
        if width not in self._projections:  # one seeded matrix per width, made on the CPU
            gen = torch.Generator().manual_seed(self.seed)
            matrix = torch.randn(width, self.project, generator=gen, dtype=torch.float64)
            self._projections[width] = matrix / self.project ** 0.5
        return feats @ self._projections[width].to(feats.device), y

    def _features(self, name: str, value):
        tensor = pick_tensor(value, name, self.output)
        if tensor.is_nested:  # nn.TransformerEncoder's fast path under a padding mask
            tensor = _unnested(tensor, self._batch.mask)
        if self.target == "next_token":
            if tensor.ndim != 3 or tensor.shape[:2] != self._valid.shape:
                raise ValueError(f"target='next_token' needs sequence outputs (N, T, d) matching the "
                                 f"tokens {tuple(self._valid.shape)}; layer {name!r} gave shape "
                                 f"{tuple(tensor.shape)}: measure the transformer blocks (layers=)")
            return _fresh64(tensor[self._valid]), self._y
        if callable(self.pool):
            feats = self.pool(name, tensor, self._batch.view())
            if not isinstance(feats, torch.Tensor) or feats.ndim < 2:
                raise TypeError(f"`pool` must return a tensor of shape (N, p), got "
                                f"{getattr(feats, 'shape', type(feats).__name__)} at layer {name!r}")
            return _fresh64(feats), self._y
        if tensor.ndim == 3 and self.pool != "flatten":
            return _pooled(name, tensor, self.pool, self._batch.mask), self._y
        if tensor.ndim == 3 and tensor.shape[1] * tensor.shape[2] > POOL_WARN_WIDTH:
            self.wide[name] = tensor.shape[1] * tensor.shape[2]
        return _fresh64(tensor), self._y


def _unnested(x: torch.Tensor, mask) -> torch.Tensor:
    """A nested tensor as (N, T, d), zeros at the padding (T: the mask's length when given)."""
    x = x.to_padded_tensor(0.0)
    if mask is not None and x.ndim == 3 and x.shape[1] < mask.shape[1]:
        x = torch.nn.functional.pad(x, (0, 0, 0, mask.shape[1] - x.shape[1]))
    return x


def _pooled(name: str, x: torch.Tensor, pool: str, mask) -> torch.Tensor:
    """(N, T, d) -> (N, d) float64, by mean, first or last (non-padded) token."""
    n, t = x.shape[:2]
    if mask is None:
        if pool == "mean":
            return x.detach().to(torch.float64).mean(1)
        return _fresh64(x[:, 0] if pool == "first" else x[:, -1])
    if tuple(mask.shape) != (n, t):
        raise ValueError(f"layer {name!r} gave {t} tokens for {n} samples but `attention_mask` has "
                         f"shape {tuple(mask.shape)}: pool it with a callable pool=")
    m = mask.to(device=x.device) != 0
    if not bool(m.any(1).all()):
        raise ValueError(f"a sequence has no token with attention_mask 1: pool={pool!r} has "
                         "nothing to pool there")
    if pool == "mean":
        m64 = m.to(torch.float64)
        return (x.detach().to(torch.float64) * m64[..., None]).sum(1) / m64.sum(1, keepdim=True)
    positions = torch.arange(t, device=x.device).expand(n, t)
    index = torch.where(m, positions, t if pool == "first" else -1)
    index = index.min(1).values if pool == "first" else index.max(1).values
    return _fresh64(x[torch.arange(n, device=x.device), index])


def next_token_targets(batch, keep=None):
    """``(valid, classes)``: the (N, T) positions that are samples, and their next tokens (M,)."""
    tokens, labels, mask = batch.tokens, batch.labels, batch.mask
    source = labels if labels is not None else tokens
    if not isinstance(source, torch.Tensor) or source.ndim != 2:
        raise ValueError("target='next_token' needs token ids of shape (N, T): 'input_ids' (or "
                         f"'labels') in a dict batch, or a tensor of ids; got "
                         f"{getattr(source, 'shape', type(source).__name__)}")
    nxt = source[:, 1:].to(torch.int64)
    valid = nxt >= 0
    if mask is not None:
        m = mask.to(device=nxt.device) != 0
        valid &= m[:, :-1] & m[:, 1:]
    if keep is not None:
        valid &= torch.isin(nxt, keep.to(nxt.device))
    classes = nxt[valid]
    return torch.cat([valid, valid.new_zeros((valid.shape[0], 1))], 1), classes


def count_next_tokens(batches, distributed: bool):
    """``(ids, counts)``: every next token that occurs in the data and how often (all ranks)."""
    ids, counts = torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.float64)
    for batch in batches():
        _, classes = next_token_targets(batch.to(torch.device("cpu"), None))
        new, n = torch.unique(classes, return_counts=True)
        ids, inverse = torch.unique(torch.cat([ids, new]), return_inverse=True)
        counts = torch.zeros(ids.numel(), dtype=torch.float64).index_add_(
            0, inverse, torch.cat([counts, n.to(torch.float64)]))
    if distributed:
        ids, rows = merge_class_rows(ids, counts[:, None])
        counts = rows[:, 0].cpu() if rows is not None else counts[:0]
    return ids, counts


def kept_tokens(ids, counts, max_classes):
    """The ``max_classes`` most frequent ids (ties: smaller id first), or None to keep all."""
    if max_classes is None or ids.numel() <= max_classes:
        return None
    order = torch.sort(-counts, stable=True).indices  # ids are sorted, so ties keep the smaller
    return ids[order[:int(max_classes)]].sort().values


def check_class_budget(n_classes: int, widths: dict, budget: int) -> None:
    """Raise one line when ``n_classes`` next-token classes at these widths exceed ``budget`` bytes."""
    total = sum(widths.values())
    need = _CLASS_COPIES * 8 * n_classes * total
    if need <= budget:
        return
    fit = budget // (_CLASS_COPIES * 8 * total)
    way = (f"keep the most frequent next tokens with max_classes={fit:,}" if fit >= 2 else
           "measure fewer or narrower layers (layers=)")
    raise ValueError(f"target='next_token' needs about {need:,} bytes ({need / 2**30:.1f} GiB: "
                     f"{n_classes:,} next-token classes x {total:,} features over {len(widths)} "
                     f"points x {_CLASS_COPIES} float64 copies), over class_bytes={budget:,}: {way}, "
                     "or raise class_bytes")


def warn_wide(wide: dict, *, stacklevel: int = 3) -> None:
    """One ``UserWarning`` naming the flattened sequence points ``{name: width}`` that are too wide."""
    named = ", ".join(f"{name} ({width:,} columns)" for name, width in wide.items())
    warnings.warn(f"sequence outputs flattened wider than {POOL_WARN_WIDTH:,} columns at {named}: "
                  "pool='mean', 'first' or 'last' gives one row of d numbers per sequence",
                  UserWarning, stacklevel=stacklevel)
