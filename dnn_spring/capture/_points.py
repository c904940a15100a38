"""Which points of a model a load curve measures by default, and which one is the logits.

:func:`default_points` is the one rule that :func:`~dnn_spring.capture.load_curve`,
:class:`~dnn_spring.capture.LoadCurveTracker`, :func:`~dnn_spring.capture._diagnose` and both
callbacks use when ``layers`` is not given, so that they measure the same
curve.  In order:

1. a model with ``load_curve_layers()`` (the package's ``MLP`` and ``CNN``)
   gives its own points;
2. a *wrapper* (not a container, no parameters of its own, and exactly
   one child that has some and has children: a ``LightningModule`` holding
   ``self.net``, a ``DistributedDataParallel``) is looked through, names
   prefixed;
3. a torchvision ResNet (``layer1`` .. ``layer4`` and ``fc``): the stem's
   output (``maxpool``), every residual block, and ``fc``;
4. a transformer (:func:`~dnn_spring.transformer_blocks` finds its blocks):
   every block, then the head that gives the logits when the model has one
   (``lm_head``, ``classifier``, ``heads``, ``head``, ``score``, ``fc``);
5. an ``nn.Sequential`` with activation modules: the output of each
   activation and the last child.  Its Linear and convolution outputs are
   pre-activations, a linear map of the point before: measured too, they
   split every layer in two halves of unlike loads;
6. anything else: its top-level children.

The input (as a point, ``"input"``) comes first in rules 3, 5 and 6 when the
data are floating-point features with one class per sample; token ids,
dict batches and ``target="next_token"`` have no input point.

**The logits.**  The point whose captured tensor *is* the model's output is
the logits: the tensor the model returns, the ``logits`` of a Hugging Face
``ModelOutput`` or of a dict, or what the user's ``output=`` callable picks
from the model's output.  A model's ``logits_layer`` attribute wins over
that; the ``logits=`` argument (a name, a position, or None for none) wins
over both.  Shape statistics leave the logits out.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["default_points", "ACTIVATIONS", "HEAD_NAMES", "model_output_tensor"]

#: Module classes whose outputs are a Sequential's points (rule 5).
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ReLU6, nn.RReLU, nn.ELU, nn.SELU, nn.CELU,
               nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish,
               nn.Hardsigmoid, nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid)
#: Names of a transformer's output head, looked up among the top-level children (rule 4).
HEAD_NAMES = ("lm_head", "classifier", "heads", "head", "score", "fc")


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _wrapped(model: nn.Module) -> "tuple[str, nn.Module] | None":
    """The one inner model of a wrapper: not a container itself, no parameters of its own,
    and one child with parameters that has children of its own (a loss module beside it
    is fine)."""
    if isinstance(model, (nn.Sequential, nn.ModuleList, nn.ModuleDict)) \
            or next(model.parameters(recurse=False), None) is not None:
        return None
    children = [(name, child) for name, child in model.named_children() if _has_parameters(child)]
    if len(children) != 1 or next(children[0][1].children(), None) is None:
        return None
    return children[0]


def _is_resnet(model: nn.Module) -> bool:
    return all(isinstance(getattr(model, f"layer{i}", None), nn.Sequential) for i in range(1, 5)) \
        and isinstance(getattr(model, "fc", None), nn.Module)


def _transformer(model: nn.Module) -> "list | None":
    from dnn_spring.capture._blocks import transformer_blocks

    try:
        blocks = transformer_blocks(model)
    except ValueError:
        return None
    heads = [name for name in HEAD_NAMES if isinstance(getattr(model, name, None), nn.Module)]
    return blocks + heads[:1]


def _points(model: nn.Module) -> "tuple[list, bool]":
    """(points, whether an input point belongs in front)."""
    if hasattr(model, "load_curve_layers"):
        return list(model.load_curve_layers()), False
    inner = _wrapped(model)
    if inner is not None:
        name, child = inner
        points, with_input = _points(child)
        return [f"{name}.{p}" if p != "input" else p for p in points], with_input
    if _is_resnet(model):
        blocks = [f"layer{i}.{b}" for i in range(1, 5)
                  for b, _ in getattr(model, f"layer{i}").named_children()]
        stem = ["maxpool"] if isinstance(getattr(model, "maxpool", None), nn.Module) else []
        return stem + blocks + ["fc"], True
    blocks = _transformer(model)
    if blocks is not None:
        return blocks, False
    children = list(model.named_children())
    if isinstance(model, nn.Sequential) and any(isinstance(m, ACTIVATIONS) for _, m in children):
        points = [name for name, m in children[:-1] if isinstance(m, ACTIVATIONS)]
        return points + [children[-1][0]], True
    return [name for name, _ in children], True


def _feature_data(data, target: str) -> bool:
    """Whether ``data`` are floating-point features with one class per sample."""
    if target != "label":
        return False
    if isinstance(data, (torch.Tensor,)) or hasattr(data, "dtype"):
        return torch.as_tensor(data[:1]).is_floating_point()
    if isinstance(data, Mapping):
        return False
    try:
        first = next(iter(data), None)
    except TypeError:
        return False
    if isinstance(first, Mapping) or first is None:
        return False
    x = first[0] if isinstance(first, (tuple, list)) else first
    return isinstance(x, torch.Tensor) and x.is_floating_point()


def default_points(model: nn.Module, data=None, *, target: str = "label") -> list:
    """The points a load curve measures when ``layers`` is not given (see the module text).

    Parameters
    ----------
    model : nn.Module
    data : optional
        The data to be measured; decides whether the input is a point.
    target : {"label", "next_token"}, default="label"

    Returns
    -------
    list of str
        Module names (``"input"`` for the raw input), in forward order.
    """
    points, with_input = _points(model)
    if with_input and data is not None and _feature_data(data, target) and "input" not in points:
        points = ["input", *points]
    if not points:
        raise ValueError(f"{type(model).__name__} has no child module to measure; pass `layers=` "
                         "(module names, a module type, or a callable)")
    return points


def model_output_tensor(value, output=None):
    """The tensor of a model's output that the logits point must be: ``output("", value)``
    when given and it returns a tensor; else the tensor itself, the ``logits`` of a
    ``ModelOutput`` or dict, else the first tensor.  None when there is no tensor."""
    if output is not None:
        try:  # the callable was written for the modules' outputs: it may not take the model's
            picked = output("", value)
        except Exception:  # noqa: BLE001 - then the model's output is read as below
            picked = None
        if isinstance(picked, torch.Tensor):
            return picked
    if isinstance(value, torch.Tensor):
        return value
    logits = value.get("logits") if isinstance(value, Mapping) else getattr(value, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    from dnn_spring.capture._pooling import _first_tensor

    return _first_tensor(value)
