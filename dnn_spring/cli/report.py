"""The ``report`` sub-command: is the load curve a proxy for test accuracy on a sweep?

    dnn-spring report results/ns_nl_quick.parquet results/lr_nl_quick.parquet --out figs/report.png
"""

from __future__ import annotations

from pathlib import Path

from ._output import check_suffix, figure_suffixes, output_path, write_figure, write_output

__all__ = ["add_parser"]


def add_parser(subparsers) -> None:
    """Register ``report``."""
    p = subparsers.add_parser(
        "report", help="rank correlation of test accuracy with the load-curve statistics",
        description="Spearman correlation, with a 95%% bootstrap interval over runs, between "
        "test accuracy and |c|, v, the fit's R² and the final log D (last hidden point), per "
        "sweep (each source is one panel) and pooled over all of them.")
    p.add_argument("source", nargs="+", help="results folder(s) or collect table(s)")
    p.add_argument("--out", metavar="PNG", type=output_path, help="write the scatter plots here")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    p.add_argument("--csv", metavar="FILE", type=output_path,
                   help="also write the correlation table as CSV")
    p.set_defaults(func=run)


def run(args) -> int:
    """Handler of ``dnn-spring report``."""
    from dnn_spring.sweep._store import load_table
    from dnn_spring.analysis._proxy import plot_proxies, proxy_correlations

    from .results import require_ok_runs

    if args.out:
        check_suffix("--out", args.out, figure_suffixes())
    if args.csv:
        check_suffix("--csv", args.csv, (".csv",))
    tables = {}
    for source in args.source:
        name = Path(str(source).rstrip("/")).stem
        if name in tables:
            raise ValueError(f"two sources are both called {name!r}; rename one")
        tables[name] = load_table(source)
        require_ok_runs(tables[name], source)
    result = proxy_correlations(tables, n_boot=args.boot, seed=args.seed)
    shown = result.assign(ci=[f"[{lo:+.2f}, {hi:+.2f}]" for lo, hi in zip(result["low"], result["high"])])
    print(shown.pivot(index="panel", columns="proxy", values="rho").round(2).to_string())
    print()
    print(shown[["panel", "proxy", "n", "rho", "ci"]].to_string(index=False, float_format=lambda v: f"{v:+.2f}"))
    written = True  # each output on its own: one that fails does not stop the other
    if args.csv:
        written &= write_output(args.csv, result.to_csv(index=False).encode(), command="report",
                                what="table")
    if args.out:
        written &= write_figure(plot_proxies(tables, result), args.out, command="report")
    return 0 if written else 1
