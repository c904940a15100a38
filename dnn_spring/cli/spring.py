"""``dnn-spring spring``: simulate spring–block chains and draw their figures.

Sub-commands:

* ``simulate`` — one chain (``--order 1|2``), a figure and optionally JSON;
* ``phase-diagram`` — the friction × noise scan and its figure;
* ``trajectories`` — lazy vs active chains over time, beside a DNN's log D per
  layer over epochs when ``--results`` points at run records with trajectories.

Every field of :class:`~dnn_spring.spring.FirstOrderConfig` and
:class:`~dnn_spring.spring.LangevinConfig` is a flag (``--mu-right`` …); a flag
that belongs to the other order is an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from dnn_spring._checks import choice_problem

__all__ = ["add_parser"]

_AXIS_FIELDS = ("mu_right", "mu_left", "noise")


def _config_classes():
    from dnn_spring.spring import FirstOrderConfig, LangevinConfig

    return {1: FirstOrderConfig, 2: LangevinConfig}


def _all_fields() -> dict:
    """Field name -> (type, help) over both configs, first seen wins."""
    out = {}
    for order, cls in _config_classes().items():
        for f in dataclasses.fields(cls):
            kind = type(f.default)
            note = out.get(f.name, (kind, []))[1] + [f"order {order}: {f.default!r}"]
            out[f.name] = (kind, note)
    return out


def _add_field_flags(parser, skip=()) -> None:
    group = parser.add_argument_group("chain configuration (defaults: the paper's reference settings)")
    for name, (kind, notes) in _all_fields().items():
        if name in skip:
            continue
        extra = {"choices": ["shared", "per_block"]} if name == "noise_mode" else {}
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None,
                           help="default " + ", ".join(notes), **extra)


def _build_config(args, skip=()):
    cls = _config_classes()[args.order]
    own = {f.name for f in dataclasses.fields(cls)}
    given = {name: getattr(args, name) for name in _all_fields()
             if name not in skip and getattr(args, name, None) is not None}
    foreign = sorted(set(given) - own)
    if foreign:
        flags = ", ".join("--" + n.replace("_", "-") for n in foreign)
        raise ValueError(f"{flags}: not a field of --order {args.order} chains")
    return cls(**given)


def _add_common(parser, *, out_default) -> None:
    parser.add_argument("--order", type=int, choices=(1, 2), default=2,
                        help="1: first-order iteration, 2: Langevin SDE (default)")
    parser.add_argument("--backend", default="numpy",
                        help="second-order integrator: numpy, torch or sdeint (default numpy)")
    parser.add_argument("--device", default=None, help="torch device for --backend torch")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--out", default=out_default, help=f"figure path (default {out_default})")
    parser.add_argument("--pdf", action="store_true", help="also save the figure as PDF")


def _save(fig, args) -> bool:
    from ._output import write_figure

    return write_figure(fig, args.out, command="spring", pdf=args.pdf)


def _simulate(config, args, **kw):
    from dnn_spring.spring import simulate_first_order, simulate_langevin

    if config.order == 1:
        problem = choice_problem("backend", args.backend, ("numpy",))
        if problem:
            raise ValueError(f"{problem} (the --order 1 chain has no other backend)")
        return simulate_first_order(config, seed=args.seed, **kw)
    return simulate_langevin(config, backend=args.backend, seed=args.seed,
                             method=getattr(args, "method", "itoint"), device=args.device, **kw)


def _cmd_simulate(args) -> int:
    from dnn_spring.spring import plot_chain

    from ._output import write_output

    config = _build_config(args)
    result = _simulate(config, args, record_every=args.record_every)
    written = True  # each output on its own: one that fails does not stop the other
    if args.json is not None:
        text = json.dumps(result.as_dict(), indent=2)
        if args.json == "-":
            print(text)
        else:
            written &= write_output(args.json, (text + "\n").encode(), command="spring",
                                    what="result")
    s = result.stats
    print(f"{s.regime}: c={s.c:+.4f} c_rel={s.c_rel:+.3f} v={s.v:.4f} "
          f"evenness={result.evenness:.3f} final={[round(float(x), 4) for x in result.final]}",
          file=sys.stderr)
    if args.out:
        written &= _save(plot_chain(result), args)
    return 0 if written else 1


def _floats(flag: str, text: str) -> list:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise ValueError(f"`{flag}` must be comma-separated numbers, got {text!r}") from exc


def _cmd_phase(args) -> int:
    from dnn_spring.spring import plot_spring_phase_diagram, scan_phase_diagram

    from ._output import write_output

    base = _build_config(args, skip=_AXIS_FIELDS)
    table = scan_phase_diagram(
        base,
        friction=None if args.friction is None else _floats("--friction", args.friction),
        noise=None if args.noise is None else _floats("--noise", args.noise),
        asymmetry=args.asymmetry, n_seeds=args.n_seeds, seed=args.seed,
        backend=args.backend, device=args.device)
    written = True
    if args.table:
        written &= write_output(args.table, _cells_bytes(table, Path(args.table).suffix),
                                command="spring", what="table")
    counts = table["regime"].value_counts().to_dict()
    print(f"{len(table)} cells: {counts}", file=sys.stderr)
    written &= _save(plot_spring_phase_diagram(table, shade=args.shade), args)
    return 0 if written else 1


def _cells_bytes(table, suffix: str) -> bytes:
    import io

    if suffix == ".parquet":
        buffer = io.BytesIO()
        table.to_parquet(buffer)
        return buffer.getvalue()
    if suffix == ".csv":
        return table.to_csv(index=False).encode()
    return (table.to_json(orient="records", indent=1) + "\n").encode()


def _cmd_trajectories(args) -> int:
    from dnn_spring.analysis._chain_fits import load_trajectory_records, pick_lazy_active, plot_spring_trajectories
    from dnn_spring.spring import trajectory_configs

    base = _build_config(args, skip=_AXIS_FIELDS)
    configs = trajectory_configs(base)
    lazy, active = (_simulate(configs[name], args) for name in ("lazy", "active"))
    records = []
    if args.results:
        found = [rec for path in args.results for rec in load_trajectory_records(path)]
        records = pick_lazy_active(found)
        if not records:
            print(f"no records with a trajectory in {args.results}; drawing the chains only",
                  file=sys.stderr)
    return 0 if _save(plot_spring_trajectories(lazy, active, records), args) else 1


def add_parser(subparsers) -> None:
    """Register ``dnn-spring spring {simulate,phase-diagram,trajectories}``."""
    spring = subparsers.add_parser("spring", help="spring-block chains: simulate, phase diagram, trajectories",
                                   description=__doc__.split("\n\n")[0])
    sub = spring.add_subparsers(dest="spring_command", metavar="SUBCOMMAND")
    spring.set_defaults(func=lambda args: (spring.print_help(), 2)[1])

    sim = sub.add_parser("simulate", help="simulate one chain and plot it")
    _add_common(sim, out_default="figs/spring_chain.png")
    sim.add_argument("--method", default="itoint", help="sdeint routine: itoint or itoEuler")
    sim.add_argument("--record-every", type=int, default=None,
                     help="record positions every N steps (default n_steps // 1000)")
    sim.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                     help="write the result record as JSON (to stdout without PATH)")
    _add_field_flags(sim)
    sim.set_defaults(func=_cmd_simulate)

    phase = sub.add_parser("phase-diagram", help="friction x noise scan and its figure")
    _add_common(phase, out_default="figs/spring_phase_diagram.png")
    phase.add_argument("--friction", default=None,
                       help="comma-separated mu_right values, top row first")
    phase.add_argument("--noise", default=None,
                       help="comma-separated noise values, left column first")
    phase.add_argument("--asymmetry", type=float, default=None,
                       help="delta = mu_left - mu_right (default 0.004 order 2, 0.05 order 1)")
    phase.add_argument("--n-seeds", type=int, default=4, help="chains per cell (default 4)")
    phase.add_argument("--shade", default="evenness", choices=("evenness", "curvature"),
                       help="cell background (default evenness)")
    phase.add_argument("--table", default=None,
                       help="also write the cells as .csv, .parquet or .json")
    _add_field_flags(phase, skip=_AXIS_FIELDS)
    phase.set_defaults(func=_cmd_phase)

    traj = sub.add_parser("trajectories", help="lazy vs active chains over time (+ DNN log D)")
    _add_common(traj, out_default="figs/spring_trajectories.png")
    traj.add_argument("--results", nargs="+", default=None, metavar="PATH",
                      help="run records (results folders, .parquet/.csv tables, .json/.jsonl "
                           "files) with a `trajectory`: adds the DNN's log D per layer over "
                           "epochs for the most concave and the most convex run")
    _add_field_flags(traj, skip=_AXIS_FIELDS)
    traj.set_defaults(func=_cmd_trajectories)


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="dnn-spring")
    add_parser(parser.add_subparsers(dest="command"))
    ns = parser.parse_args()
    sys.exit(ns.func(ns))
