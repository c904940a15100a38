"""The ``collect`` and ``plot`` sub-commands: a results folder to a table, tables to figures.

    dnn-spring collect results/ns_nl_quick           # -> results/ns_nl_quick.parquet
    dnn-spring plot phase-diagram results/ns_nl_quick --out figs/pd_ns_nl_quick.png
"""

from __future__ import annotations

from pathlib import Path

from ._output import check_suffix, figure_suffixes, output_path, write_figure, write_output

__all__ = ["add_collect", "add_plot", "select_where", "require_ok_runs"]


def add_collect(subparsers) -> None:
    """Register ``collect``."""
    p = subparsers.add_parser(
        "collect", help="gather a results folder into one table",
        description="One row per run record; corrupt records are reported and skipped.")
    p.add_argument("results", help="results folder, e.g. results/ns_nl")
    p.add_argument("--out", type=output_path,
                   help="table file, .parquet (lists kept) or .csv (lists as JSON); "
                   "default <results>.parquet")
    p.set_defaults(func=_run_collect)


def _run_collect(args) -> int:
    from dnn_spring.sweep._store import TABLE_SUFFIXES, collect, table_bytes

    out = Path(args.out or f"{str(args.results).rstrip('/')}.parquet")
    check_suffix("--out", out, TABLE_SUFFIXES)
    table = collect(args.results)
    counts = table["status"].value_counts().to_dict() if len(table) else {}
    written = write_output(out, table_bytes(table, out), command="collect", what="table",
                           said=f"collected {len(table)} runs {counts} from {args.results} -> "
                           "{path}")
    return 0 if written else 1


_PLOTS = {
    "phase-diagram": ("pd", "one phase-diagram panel: load curves on an accuracy background"),
    "four-panel": ("pd_four_panel", "several panels (the four MLP sweeps) in one figure"),
    "curvature": ("curv", "heat map of the curvature c (or --value) over the grid"),
    "trajectories": ("traj", "log D per layer against epoch in every cell"),
}


def add_plot(subparsers) -> None:
    """Register ``plot`` and its kinds."""
    p = subparsers.add_parser("plot", help="phase-diagram figures from results",
                              description="Figures from results folders or collect tables.")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, (_, text) in _PLOTS.items():
        k = kinds.add_parser(kind, help=text, description=text)
        many = kind == "four-panel"
        k.add_argument("source", nargs="+" if many else None,
                       help="results folder(s) or collect table(s) (.parquet/.csv)")
        k.add_argument("--axis", action="append" if many else "store",
                       choices=("noise", "lr", "dropout", "batch_size"),
                       help="noise axis (default: the column that varies)")
        k.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                       help="keep only the runs with this config value (e.g. --where "
                       "noise=0.4, or a comma list); repeatable")
        k.add_argument("--out", type=output_path,
                       help="PNG file (default figs/<kind>_<source name>.png)")
        k.add_argument("--pdf", action="store_true", help="also write a PDF next to the PNG")
        k.add_argument("--title", help="figure title (default: the source name)")
        if kind == "phase-diagram":
            k.add_argument("--show-logits", action="store_true",
                           help="mark the logits point as an open circle")
        if kind in ("phase-diagram", "four-panel"):
            k.add_argument("--curve", default="log_d", choices=("log_d", "log_d_pinv32"),
                           help="the load curve drawn: log_d (float64, default) or log_d_pinv32 "
                           "(the original code's float32 pinv; records of 0.5.0 on)")
        if kind == "curvature":
            k.add_argument("--value", default="c", help="column to map (default c)")
        k.set_defaults(func=_run_plot)


def select_where(table, where):
    """The rows of ``table`` whose fields equal every ``KEY=VALUE`` of ``where``."""
    from dnn_spring.sweep._grids import parse_value

    for item in where:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"`--where` must be KEY=VALUE, got {item!r}")
        if name not in table.columns:
            raise ValueError(f"`--where` field {name!r} is not a column of the table")
        value = parse_value(name, text)
        kept = table[table[name].isin(value if isinstance(value, list) else [value])]
        if not len(kept):
            found = ", ".join(f"{v:g}" if isinstance(v, float) else str(v)
                              for v in sorted(table[name].dropna().unique()))
            raise ValueError(f"no run has {name}={text.strip()}; the table has {found}")
        table = kept
    return table


def _run_plot(args) -> int:
    from dnn_spring.analysis import _phase_plots as plots
    from dnn_spring.sweep._store import load_table

    if args.out:
        check_suffix("--out", args.out, figure_suffixes())
    sources = args.source if isinstance(args.source, list) else [args.source]
    names = [Path(str(s).rstrip("/")).stem for s in sources]
    tables = [select_where(load_table(s), args.where) for s in sources]
    for source, table in zip(sources, tables):
        require_ok_runs(table, source)
    prefix = _PLOTS[args.kind][0]
    if args.kind == "four-panel":
        fig = plots.four_panel(tables, axes=args.axis, titles=names, curve=args.curve)
        default = f"figs/{prefix}.png"
    else:
        title = args.title or names[0]
        if args.kind == "phase-diagram":
            fig = plots.phase_diagram(tables[0], axis=args.axis, title=title,
                                      show_logits=args.show_logits, curve=args.curve)
        elif args.kind == "curvature":
            fig = plots.curvature_map(tables[0], axis=args.axis, value=args.value, title=title)
        else:
            fig = plots.trajectory_grid(tables[0], axis=args.axis, title=title)
        default = f"figs/{prefix}_{names[0]}.png"
    return 0 if write_figure(fig, args.out or default, command="plot", pdf=args.pdf) else 1


def require_ok_runs(table, source) -> None:
    """Raise ValueError (one line) when ``table`` has no run with status "ok"."""
    ok = int((table["status"] == "ok").sum()) if "status" in table.columns else 0
    if not ok:
        counts = table["status"].value_counts().to_dict() if "status" in table.columns else {}
        raise ValueError(f"{source} has no successful run (status ok) to show: "
                         f"{len(table)} runs {counts}")
