"""The ``diagnose`` sub-command: the stress map of a saved model.

    dnn-spring train --dataset mnist5k --epochs 20 --save-model net.pt
    dnn-spring diagnose --model net.pt --dataset mnist5k --out stress.png
"""

from __future__ import annotations

import json
import sys
import warnings

__all__ = ["add_parser", "read_model"]


def add_parser(subparsers) -> None:
    """Register ``diagnose``."""
    p = subparsers.add_parser(
        "diagnose", help="which layers of a saved model are overloaded or idle",
        description="Measure the load curve of a saved model (as `dnn-spring train --save-model` writes, "
        "TorchScript of an nn.Sequential, or with --trust a whole pickled nn.Module) on a data "
        "set's clean training images, print each layer's share of the load with a flag, the "
        "curve's shape and advice; optionally draw the stress map.")
    p.add_argument("--model", required=True, metavar="FILE",
                   help="the saved model: from `dnn-spring train --save-model` (weights, loaded "
                   "safely), TorchScript of an nn.Sequential, or with --trust a whole pickled module")
    p.add_argument("--trust", action="store_true",
                   help="allow a whole pickled nn.Module: unpickling runs any code the file holds")
    p.add_argument("--dataset", required=True, help="data set name (mnist5k, digits, ...)")
    p.add_argument("--n-train", type=int, default=0, help="training samples (0: the data set's default)")
    p.add_argument("--image-size", type=int, default=10, help="image side the model expects (default 10)")
    p.add_argument("--data-root", default="./data", help="folder of torchvision data sets")
    p.add_argument("--out", metavar="PNG", help="write the stress map (each layer's share) here")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0].split(". ")[0] if text else ""  # torch's long advice is left out


def _unpickle(path, trust: bool):
    """A whole pickled object, loaded only with ``trust`` (it can run any code)."""
    import torch

    try:
        needs = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))  # a set
    except Exception:  # noqa: BLE001 - not a zip checkpoint: no names to show
        needs = []
    if not trust:
        names = f" (it names {', '.join(needs[:3])}{', ...' if len(needs) > 3 else ''})" \
            if needs else ""
        raise ValueError(f"{path} is a pickled object, not weights{names}: unpickling it runs any code "
                         "the file holds; pass --trust to load it if you trust where it came "
                         "from, or save weights (dnn-spring train --save-model) or TorchScript")
    print(f"dnn-spring diagnose: --trust: unpickling {path} with torch.load(weights_only=False); "
          "this runs any code the file holds", file=sys.stderr)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{path} is not a saved model ({type(exc).__name__}: "
                         f"{_first_line(exc)})") from None


def read_model(path, *, trust: bool = False):
    """The ``nn.Module`` in ``path`` (one-line errors).

    Read in this order: a model of ``dnn-spring train --save-model``
    (weights and config, :mod:`dnn_spring.train._saved`, loaded with
    ``weights_only=True``), TorchScript, and, only with ``trust``, a whole
    pickled module (``torch.load(..., weights_only=False)``, which runs any
    code the file holds).
    """
    import pickle
    from pathlib import Path

    import torch
    from torch import nn

    from dnn_spring.train._saved import from_saved, is_saved_model

    if Path(path).is_dir():
        raise ValueError(f"model file {str(path)!r} is a folder; give the saved model's file")
    if not Path(path).is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    try:
        model = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # code, or not a pickle at all
        model, unsafe = None, "global" in str(exc).lower()
    except Exception:  # noqa: BLE001 - e.g. TorchScript's archive layout
        model, unsafe = None, False
    if is_saved_model(model):
        return from_saved(model, path)
    if model is None:
        try:
            with warnings.catch_warnings():  # torch.jit.load's deprecation notice
                warnings.simplefilter("ignore", FutureWarning)
                return _Taps(torch.jit.load(path, map_location="cpu"))
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - not TorchScript either
            if not unsafe:
                raise ValueError(f"{path} is not a saved model ({type(exc).__name__}: "
                                 f"{_first_line(exc)})") from None
        model = _unpickle(path, trust)
    if not isinstance(model, nn.Module):
        raise ValueError(f"{path} holds a {type(model).__name__}, not an nn.Module "
                         "(save the whole model with torch.save(model, path), not its state_dict)")
    return model


class _Taps:
    """Wraps a scripted nn.Sequential so each child's output can be hooked (ScriptModules
    take no forward hooks): defined lazily as an nn.Module below."""

    def __new__(cls, scripted):
        from torch import nn

        if getattr(scripted, "original_name", "") != "Sequential":
            raise ValueError("a TorchScript model takes no hooks: only a scripted nn.Sequential "
                             "can be measured; save the whole module with torch.save instead")

        class Taps(nn.Module):
            def __init__(self):
                super().__init__()
                self.scripted = scripted
                self.names = [name for name, _ in scripted.named_children()]
                self.taps = nn.ModuleDict({name: nn.Identity() for name in self.names})

            def forward(self, x):
                for name, child in zip(self.names, self.scripted.children()):
                    x = self.taps[name](child(x))
                return x

            def load_curve_layers(self):
                return ["input"] + [f"taps.{name}" for name in self.names]

        return Taps()


def _fit_inputs(model, x):
    """``x`` as the model takes it: as is, or flattened per sample; else one line."""
    import torch

    tries = [x, x.reshape(len(x), -1)]
    errors = []
    for candidate in tries:
        try:
            with torch.no_grad():
                model.eval()(candidate[:2])
            return candidate
        except Exception as exc:  # noqa: BLE001
            errors.append(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    raise ValueError(f"the data's inputs {tuple(x.shape[1:])} (or flattened, "
                     f"{tries[1].shape[1]}) do not fit the model: {errors[-1]}")


def run(args) -> int:
    """Handler of ``dnn-spring diagnose``."""
    from dnn_spring.metrics._conditioning import near_singular_note
    from dnn_spring.train._config import DataConfig
    from dnn_spring.train._data import load_dataset
    from dnn_spring.capture._diagnose import diagnose

    model = read_model(args.model, trust=args.trust)
    data = load_dataset(DataConfig(dataset=args.dataset, n_train=args.n_train,
                                   image_size=args.image_size, data_root=args.data_root), flatten=False)
    x = _fit_inputs(model, data.x_train)
    result = diagnose(model, x, data.y_train, warn=False)
    note = near_singular_note(
        result.layers.loc[result.layers["near_singular"].astype(bool), "layer"].tolist(),
        "see rank_b and cond_b in --json")
    if note:
        print(note, file=sys.stderr)
    if args.json:
        print(json.dumps({"layers": json.loads(result.layers.to_json(orient="records")),
                          "summary": result.summary, "advice": result.advice}))
    else:
        print(result)
    if args.out:
        from dnn_spring._style import save_figure

        written = save_figure(result.plot(), args.out)
        print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
    return 0
