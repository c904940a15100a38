"""``dnn-spring train``: train one network and print its load curve.

One flag per :class:`~dnn_spring.train._config.RunConfig` field, defaults from the
dataclasses.  Bad values end in one line on stderr and exit status 2 (argparse
type errors here, config validation errors through the dispatcher).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from dnn_spring.train._config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ._limits import check_model, check_n_train, check_threads
from ._output import output_path, write_output

_M, _D, _T = ModelConfig(), DataConfig(), TrainConfig()

# (flag, field, type, help); defaults come from the config dataclasses
_VALUE_FLAGS = (
    ("--arch", "arch", str, "network: mlp or cnn"),
    ("--depth", "depth", int, "L: the MLP has L-1 hidden blocks and a linear head"),
    ("--width", "width", int, "hidden width of the MLP"),
    ("--slope", "slope", float, "LeakyReLU negative slope alpha in [0, 1] (0 ReLU, 1 linear)"),
    ("--dropout", "dropout", float, "dropout probability p in [0, 1)"),
    ("--init", "init", str, "weight init: default, orthogonal, kaiming, normal or identity"),
    ("--init-scale", "init_scale", float, "multiply every initial weight by this (> 0)"),
    ("--channels", "channels", int, "CNN channels per convolution"),
    ("--dataset", "dataset", str,
     "mnist5k or digits (embedded, offline), mnist, fashionmnist, cifar10, gaussian or random"),
    ("--n-train", "n_train", int, "training samples (0: the data set's default)"),
    ("--data-root", "data_root", str, "folder of torchvision data sets"),
    ("--image-size", "image_size", int, "resize torchvision images to this many pixels a side"),
    ("--data-seed", "data_seed", int, "seed of the training subset / synthetic data"),
    ("--optimizer", "optimizer", str, "adam, sgd, sgld or psgld"),
    ("--lr", "lr", float, "learning rate (> 0)"),
    ("--batch-size", "batch_size", int, "mini-batch size (0: full batch)"),
    ("--epochs", "epochs", int, "maximum number of epochs"),
    ("--noise", "noise", float, "data/label noise p in [0, 1], fresh every step"),
    ("--temperature", "temperature", float, "Langevin temperature of sgld / psgld"),
    ("--weight-decay", "weight_decay", float, "L2 penalty"),
    ("--stop-loss", "stop_loss", float, "stop when the epoch's mean loss is below this"),
    ("--stop-delta", "stop_delta", float, "stop when the epoch's mean loss changes less"),
    ("--curve-every", "curve_every", int, "record the load curve every k epochs (0: never)"),
    ("--seed", "seed", int, "run seed (init, data order, noise, dropout)"),
)


def _default(field: str):
    if field == "seed":
        return 0
    for part in (_M, _D, _T):
        if hasattr(part, field):
            return getattr(part, field)
    raise KeyError(field)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" for value flags only: an on/off switch says its effect."""

    def _get_help_string(self, action):
        if action.nargs == 0:  # --no-batchnorm, --zero-bias, --hessian, --help
            return action.help
        return super()._get_help_string(action)


def add_parser(subparsers) -> None:
    """Register ``train`` on the dispatcher's sub-parsers."""
    p = subparsers.add_parser(
        "train",
        help="train one network and measure its load curve",
        description="Train one network (the paper's MLP or CNN), then measure its load curve on the clean "
        "training set and print it with the accuracies and the curve's shape (v, c, regime).",
        formatter_class=_HelpFormatter,
    )
    for flag, field, kind, text in _VALUE_FLAGS:
        p.add_argument(flag, dest=field, type=kind, default=_default(field), help=text,
                       metavar=field.upper())
    p.add_argument("--no-batchnorm", dest="batchnorm", action="store_false",
                   help="drop every BatchNorm layer (default: BatchNorm on)")
    p.add_argument("--zero-bias", dest="zero_bias", action="store_true",
                   help="start every bias at zero (default: off)")
    p.add_argument("--hessian", action="store_true",
                   help="also estimate the Hessian's top eigenvalue and trace at the end "
                   "(default: off)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="on a CUDA device, replay each batched training step from a CUDA graph "
                   "(sets DNN_SPRING_CUDA_GRAPHS=1; ignored on the CPU)")
    p.add_argument("--grouped", action="store_true",
                   help="train an MLP as a group of one (the batched kernels), so the record is "
                   "bit for bit the one a sweep gives this config; default: the plain kernels, "
                   "about twice as fast, equal to it up to float32 rounding")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads (default: OMP_NUM_THREADS if set, else torch's own "
                   "choice); recorded in the record")
    p.add_argument("--out", default=None, metavar="FILE", type=output_path,
                   help="write the run record as JSON to FILE")
    p.add_argument("--save-model", default=None, metavar="FILE", type=output_path,
                   help="save the trained network (its config and weights; read safely by "
                   "`dnn-spring diagnose --model FILE` and dnn_spring.train._saved) to FILE")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="hide the progress bar")
    p.add_argument("--reproducible", action="store_true",
                   help="the same record bit for bit on every x86 CPU with AVX2 (same torch "
                   "build and threads); sets DNN_SPRING_REPRODUCIBLE=1 and restarts the command")

    def one_line_error(message):  # argparse would print the whole usage first
        print(f"dnn-spring train: error: {message}", file=sys.stderr)
        sys.exit(2)

    p.error = one_line_error
    p.set_defaults(func=run)


def config_from_args(args) -> RunConfig:
    """The RunConfig named by parsed ``args`` (ValueError lists every bad value)."""
    if args.seed < 0:
        raise ValueError(f"`--seed` must be >= 0, got {args.seed}")
    flat = {field: getattr(args, field) for _, field, _, _ in _VALUE_FLAGS}
    flat.update(batchnorm=args.batchnorm, zero_bias=args.zero_bias, hessian=args.hessian)
    return RunConfig.from_flat(flat)


def _fmt(x, spec=".3f") -> str:
    return "-" if x is None else format(x, spec)


def format_record(record: dict) -> str:
    """The short table printed after a run: load curve, accuracies, shape.

    Next to log D it shows ``log D pinv32`` (the original code's float32
    metric), ``rank_b`` and ``cond_b`` when the record has them (0.5.0 on).
    """
    lines = []
    points = record["log_d"]
    extra = bool(record.get("cond_b")) and len(record["cond_b"]) == len(points)
    if points:
        head = f"{'point':>5}  {'layer':<14} {'log D':>8} {'load':>8}"
        lines.append(head + (f" {'pinv32':>8} {'rank_b':>6} {'cond_b':>8}" if extra else ""))
        prev = None
        for i, (name, value) in enumerate(zip(record["layers"], points)):
            load = None if prev is None or value is None else prev - value
            line = f"{i:>5}  {name:<14} {_fmt(value):>8} {_fmt(load):>8}"
            if extra:
                line += (f" {_fmt(record['log_d_pinv32'][i]):>8} {record['rank_b'][i]:>6}"
                         f" {_fmt(record['cond_b'][i], '.2g'):>8}")
            tag = " (logits)" if i == len(points) - 1 else ""
            lines.append(line + tag)
            prev = value
    lines.append(
        f"status {record['status']}, {record['epochs_run']} epochs (stop: {record['stop_reason']})  "
        f"train loss {_fmt(record['train_loss'], '.4g')}  train acc {_fmt(record['train_acc'])}  "
        f"test acc {_fmt(record['test_acc'])}"
    )
    lines.append(f"v {_fmt(record['v'])}  c {_fmt(record['c'])}  regime {record['regime'] or '-'}"
                 f"  wall time {record['wall_time']:.1f} s")
    if record["hessian_top"] is not None:
        lines.append(f"hessian top {record['hessian_top']:.4g}  trace {record['hessian_trace']:.4g}")
    return "\n".join(lines)


def near_singular_note(record: dict) -> "str | None":
    """One line naming the record's near-singular points (``record["near_singular"]``), or None."""
    from dnn_spring.metrics._conditioning import near_singular_note as note

    return note(record.get("near_singular"), "compare the pinv32 column")


def _model_bytes(model) -> bytes:
    from dnn_spring.train._saved import model_bytes

    return model_bytes(model.cpu().eval())


def run(args) -> int:
    """Handler of ``dnn-spring train``.

    Sizes are checked before anything is built (:mod:`._limits`).  The
    record (``--out``) is written before the model (``--save-model``), each
    atomically and on its own: a write that fails keeps its bytes in the
    temporary folder, says where in one line, and makes the exit status 1.
    """
    from dnn_spring.train._run import resolve_device, train_run

    if args.reproducible:
        from dnn_spring.train._reproducible import reexecute

        reexecute("dnn-spring train")
    config = config_from_args(args)
    if args.cuda_graphs:
        from dnn_spring.train._cuda_graphs import ENV_FLAG

        os.environ[ENV_FLAG] = "1"  # read by every group, in this process and its workers
    device = resolve_device(args.device)
    check_threads(args.threads)
    check_n_train(config, str(device))
    check_model(config, str(device))
    import torch

    threads = torch.get_num_threads()
    try:  # `main(["train", ...])` called from Python leaves the caller's thread count as it was
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        record, model = train_run(config, device=device, progress=args.progress, return_model=True,
                                  grouped=args.grouped)
    finally:
        torch.set_num_threads(threads)
    print(format_record(record), flush=True)
    note = near_singular_note(record)
    if note:
        print(note, file=sys.stderr)
    written = True
    if args.out:
        text = json.dumps(record, indent=1, allow_nan=False).encode()
        written &= write_output(args.out, text, command="train", what="record",
                                said="record written to {path}", stdout=True)
    if args.save_model and model is not None:
        written &= write_output(args.save_model, _model_bytes(model), command="train",
                                what="model", said="model written to {path}", stdout=True)
    elif args.save_model:
        print(f"dnn-spring train: no model saved: the run is {record['status']}", file=sys.stderr)
    if record["status"] == "failed":
        print(f"dnn-spring train: error: {record['error']}", file=sys.stderr)
        return 1
    if record["status"] == "diverged":
        print(f"dnn-spring train: the run diverged after {record['epochs_run']} epochs "
              f"(loss {_fmt(record['train_loss'], '.4g')}); its record says status=diverged; "
              "try a smaller --lr", file=sys.stderr)
    return 0 if written else 1
