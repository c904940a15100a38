"""The package's own networks saved as weights and config, loadable without unpickling code.

``dnn-spring train --save-model`` writes :func:`model_bytes`: a dict of the
architecture's config, its input shape, its class count and its
``state_dict``.  :func:`load_model` reads it back with
``torch.load(..., weights_only=True)``, which refuses to run any code the
file might hold, and rebuilds the :class:`~dnn_spring.train._models.MLP` or
:class:`~dnn_spring.train._models.CNN` from the config.
"""

from __future__ import annotations

import dataclasses
import io

import torch

from dnn_spring.train._config import ModelConfig
from dnn_spring.train._models import CNN, MLP

__all__ = ["FORMAT", "model_bytes", "is_saved_model", "from_saved"]

#: The ``format`` entry of a saved model.
FORMAT = "dnn-spring-model/1"


def model_bytes(model) -> bytes:
    """The bytes of a saved :class:`~dnn_spring.train._models.MLP` or :class:`~dnn_spring.train._models.CNN`."""
    if isinstance(model, MLP):
        shape = [model.n_in]
    elif isinstance(model, CNN):
        shape = list(model.input_shape)
    else:
        raise TypeError(f"only the package's MLP and CNN are saved this way, got "
                        f"{type(model).__name__}; use torch.save for other models")
    state = {name: value.detach().cpu() for name, value in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "model": dataclasses.asdict(model.config),
                "input_shape": shape, "n_classes": int(model.n_out), "state_dict": state}, buffer)
    return buffer.getvalue()


def is_saved_model(obj) -> bool:
    """Is ``obj`` (what ``torch.load`` gave) a model of :func:`model_bytes`?"""
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def from_saved(obj, path="the file") -> torch.nn.Module:
    """The network of a loaded saved model, in eval mode (one-line ``ValueError`` if broken)."""
    try:
        config = ModelConfig(**obj["model"])
        klass = MLP if config.arch == "mlp" else CNN
        shape = obj["input_shape"][0] if klass is MLP else tuple(obj["input_shape"])
        model = klass(config, shape, int(obj["n_classes"]), state=obj["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()
        raise ValueError(f"{path} is a damaged saved model ({type(exc).__name__}: "
                         f"{first[0] if first else ''})") from None
    return model.eval()
