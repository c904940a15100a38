"""``dnn-spring fit``: a spring–block chain fitted to every cell of a sweep."""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(subparsers) -> None:
    """Register ``fit``."""
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
    p.add_argument("--out", help="table file (.csv or .parquet); default results/fit_<source>.csv")
    p.add_argument("--figure", help="PNG file; default figs/fit_<source>.png")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_fit)


def _run_fit(args) -> int:
    from dnn_spring._style import save_figure
    from dnn_spring.checks import check_range
    from dnn_spring.cli.sweep import _select
    from dnn_spring.compare import analogy_correlations, fit_sweep, plot_fit_maps
    from dnn_spring.plots import infer_axis
    from dnn_spring.records import load_table, save_table

    check_range("--seeds", args.seeds, 1)
    name = Path(str(args.source).rstrip("/")).stem
    table = _select(load_table(args.source), args.where)
    axis = args.axis or infer_axis(table)
    fits = fit_sweep(table, axis=axis, order=args.order, n_seeds=args.seeds,
                     asymmetry=args.asymmetry, progress=not args.no_progress)
    out = Path(args.out or f"results/fit_{name}.csv")
    save_table(fits, out)
    correlations = analogy_correlations(fits, axis)
    out.with_suffix(".json").write_text(json.dumps({"axis": axis, **correlations}, indent=1))
    figure = save_figure(plot_fit_maps(fits, axis, title=f"chain fit: {name}"),
                         args.figure or f"figs/fit_{name}.png")
    for key, text in (("friction", "fitted friction vs 1 - slope"),
                      ("shaking", f"fitted chain noise vs training noise ({axis})")):
        c = correlations[key]
        print(f"{text}: Spearman rho {c['rho']:+.2f} (p {c['p']:.2g}, {c['n']} cells)")
    print(f"wrote {out}, {out.with_suffix('.json')}, " + ", ".join(map(str, figure)),
          file=sys.stderr)
    return 0
