"""``dnn-spring fit`` (a chain fitted to every cell of a sweep) and ``dnn-spring animate``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(subparsers) -> None:
    """Register ``fit`` and ``animate``."""
    _add_animate(subparsers)
    p = subparsers.add_parser(
        "fit", help="fit a spring-block chain to every cell of a sweep",
        description="Fit the first-order chain's friction mu_right, asymmetry mu_left/mu_right "
        "and noise to the mean load curve of every (slope, noise) cell of a results folder or "
        "collect table; write the table, a figure of fitted friction and noise, and the rank "
        "correlations that test the analogy (friction ~ 1 - slope, chain noise ~ training noise).")
    p.add_argument("source", help="results folder or collect table (.parquet/.csv)")
    p.add_argument("--axis", choices=("noise", "lr", "dropout", "batch_size"),
                   help="noise axis (default: the column that varies)")
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="keep only the runs with this config value; repeatable")
    p.add_argument("--asymmetry", type=float,
                   help="hold mu_left/mu_right at this value (e.g. 1 for symmetric friction); "
                   "default: fit it too")
    p.add_argument("--order", type=int, choices=(1, 2), default=1,
                   help="1: first-order chain (default); 2: Langevin chain")
    p.add_argument("--seeds", type=int, default=4, help="chains averaged per point (default 4)")
    p.add_argument("--trajectory", action="store_true",
                   help="fit each cell's load curves over training (runs trained with "
                   "--set curve_every=K), not only its final curve")
    p.add_argument("--scale", default="sweep",
                   help="with --trajectory: 'sweep' (one clock for every cell, default), 'fit' "
                   "(a clock per cell) or a number in (0, 1]")
    p.add_argument("--out", help="table file (.csv or .parquet); default "
                   "results/fit_<source><suffix>.csv, the suffix naming the fit (_trajectory, "
                   "_symmetric, _asym<value>) so that fits do not overwrite each other")
    p.add_argument("--figure", help="PNG file; default figs/fit_<source><suffix>.png")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_fit)


def _run_fit(args) -> int:
    from dnn_spring._style import save_figure
    from dnn_spring._checks import check_range
    from dnn_spring.cli.results import select_where
    from dnn_spring.analysis._chain_fits import analogy_correlations, fit_sweep, plot_fit_maps
    from dnn_spring.analysis._phase_plots import infer_axis
    from dnn_spring.sweep._store import load_table, save_table

    check_range("--seeds", args.seeds, 1)
    if args.asymmetry is not None:
        check_range("--asymmetry", args.asymmetry, 0.0, lo_open=True)
    scale = _scale(args.scale) if args.trajectory else None
    name = Path(str(args.source).rstrip("/")).stem + fit_suffix(args.trajectory, args.asymmetry)
    out = Path(args.out or f"results/fit_{name}.csv")
    if out.suffix not in (".csv", ".parquet"):
        raise ValueError(f"`--out` must end in .csv or .parquet, got {str(out)!r}")
    table = select_where(load_table(args.source), args.where)
    axis = args.axis or infer_axis(table)
    fits = fit_sweep(table, axis=axis, order=args.order, n_seeds=args.seeds,
                     asymmetry=args.asymmetry, progress=not args.no_progress,
                     trajectory=args.trajectory, **({"scale": scale} if scale else {}))
    save_table(fits, out)
    correlations = analogy_correlations(fits, axis)
    summary = {"axis": axis, "trajectory": bool(args.trajectory), "asymmetry": args.asymmetry,
               "cells": int(len(fits)), "fitted": int(fits["chain_mu_right"].notna().sum()),
               "median_residual": float(fits["fit_residual"].median()), **correlations}
    if args.trajectory:
        summary["scale"] = float(fits["chain_scale"].median())
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    figure = save_figure(plot_fit_maps(fits, axis, title=f"chain fit: {name}"),
                         args.figure or f"figs/fit_{name}.png")
    for key, text in (("friction", "fitted friction vs 1 - slope"),
                      ("shaking", f"fitted chain noise vs training noise ({axis})")):
        c = correlations[key]
        print(f"{text}: Spearman rho {c['rho']:+.2f} [95% {c['low']:+.2f}, {c['high']:+.2f}] "
              f"(p {c['p']:.2g}, {c['n']} cells, {c['identified']:.0%} identified)")
    print(f"median residual {summary['median_residual']:.3f}"
          + (f", time scale {summary['scale']:.3g}" if args.trajectory else ""))
    print(f"wrote {out}, {out.with_suffix('.json')}, " + ", ".join(map(str, figure)),
          file=sys.stderr)
    return 0


def fit_suffix(trajectory: bool, asymmetry) -> str:
    """The part of a fit's default file names that says which fit it is."""
    kind = "_trajectory" if trajectory else ""
    if asymmetry is None:
        return kind
    return kind + ("_symmetric" if float(asymmetry) == 1.0 else f"_asym{float(asymmetry):g}")


def _scale(text: str):
    if text in ("sweep", "fit"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise ValueError(f"`--scale` must be 'sweep', 'fit' or a number in (0, 1], got {text!r}")
    return value


def _add_animate(subparsers) -> None:
    p = subparsers.add_parser(
        "animate", help="GIF: the spring-block chain moving beside a network's load curve",
        description="An animated GIF of the chain (blocks and springs on a ruler) beside a "
        "network's load curve over training; the chain is the one fitted to the network's final "
        "curve (symmetric friction), or with --chain trajectory to its whole trajectory.  Settings: lazy (ReLU, no noise) and active (slope 0.3, "
        "data noise 0.4).  Without --record it trains the setting's network on mnist5k itself.")
    p.add_argument("--setting", choices=("lazy", "active"), default="lazy")
    p.add_argument("--record", help="JSON run record with a trajectory (train with "
                   "--curve-every); default: train the setting's network now")
    p.add_argument("--epochs", type=int, default=100,
                   help="epochs when training the network here (default 100)")
    p.add_argument("--chain", choices=("final", "trajectory"), default="final",
                   help="the chain fitted to the network's final curve (default) or to its "
                   "whole trajectory (run for the fitted time scale, so frames match in time)")
    p.add_argument("--frames", type=int, default=50, help="frames (default 50)")
    p.add_argument("--fps", type=int, default=10, help="frames per second (default 10)")
    p.add_argument("--seed", type=int, default=0, help="network and chain seed (default 0)")
    p.add_argument("--out", help="GIF file; default figs/animate_<setting>.gif, or "
                   "figs/animate_<record name>.gif with --record")
    p.set_defaults(func=_run_animate)


def _run_animate(args) -> int:
    from dnn_spring.analysis._animate import animate_chain_and_network, fitted_chain, setting_config
    from dnn_spring._checks import check_range
    from dnn_spring.train._run import train_run

    check_range("--frames", args.frames, 2)
    check_range("--fps", args.fps, 1)
    run = setting_config(args.setting, epochs=args.epochs, seed=args.seed)
    if args.record:
        try:
            record = json.loads(Path(args.record).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"`--record` {args.record} is not JSON ({exc})") from None
        if not isinstance(record, dict):
            raise ValueError(f"`--record` must hold one JSON object, got {type(record).__name__}")
    else:
        print(f"training the {args.setting} network: {run.model.arch}, slope {run.model.slope}, "
              f"noise {run.train.noise}, {run.train.epochs} epochs on mnist5k", file=sys.stderr)
        record = train_run(run, progress=True)
        if record["status"] != "ok":
            raise ValueError(f"the network's run ended {record['status']}: {record['error']}")
    chain = fitted_chain(record, seed=args.seed, trajectory=args.chain == "trajectory")
    name = args.setting if not args.record else Path(args.record).stem
    title = (f"{name}: network (slope {record.get('slope')}, noise {record.get('noise')}) beside "
             f"its fitted chain (friction {chain.mu_right:.2g}, noise {chain.noise:.2g})")
    out = animate_chain_and_network(chain, record, args.out or f"figs/animate_{name}.gif",
                                    frames=args.frames, fps=args.fps, seed=args.seed, title=title)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)", file=sys.stderr)
    return 0
