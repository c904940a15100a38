"""The ``report`` sub-command: is the load curve a proxy for test accuracy on a sweep?

    dnn-spring report results/ns_nl_quick.parquet results/lr_nl_quick.parquet --out figs/report.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._output import check_suffix, figure_suffixes, output_path, write_figure, write_output

__all__ = ["add_parser"]


def add_parser(subparsers) -> None:
    """Register ``report``."""
    p = subparsers.add_parser(
        "report", help="the load curve as a proxy for test accuracy, against its baselines, "
        "and an early forecast",
        description="Spearman ρ, with a 95%% bootstrap interval over runs, of test accuracy "
        "and of the generalization gap with |c|, v, the fit's R² and the final log D (last "
        "hidden point), beside training accuracy and loss on the clean labels, and the partial "
        "ρ given training accuracy; per sweep (each source is one panel) and pooled. With "
        "trajectories, the same at fractions of training against the final test accuracy.")
    p.add_argument("source", nargs="+", help="results folder(s) or collect table(s)")
    p.add_argument("--out", metavar="PNG", type=output_path, help="write the scatter plots here")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    p.add_argument("--csv", metavar="FILE", type=output_path,
                   help="also write the correlation table as CSV")
    p.add_argument("--weightwatcher", action="store_true",
                   help="add WeightWatcher's alpha and alpha_weighted of the same trained models "
                   "(results folders of sweeps run with --save-weights; "
                   'pip install "dnn-spring[weightwatcher]")')
    p.add_argument("--save-tables", metavar="DIR", type=output_path,
                   help="also write each source's table, with the WeightWatcher columns when "
                   "asked, as DIR/<name>.parquet (a report of those needs no weights)")
    g = p.add_argument_group("early forecast (runs with trajectories: sweep --trajectory N)")
    g.add_argument("--forecast", type=_fractions, metavar="F,F,...", default=None,
                   help="fractions of training at which to forecast the final test accuracy "
                   "(default 0.1,0.25,0.5 when the runs have trajectories)")
    g.add_argument("--top", type=int, default=3, metavar="K",
                   help="size of the top set in the hit count (default 3)")
    g.add_argument("--forecast-out", metavar="PNG", type=output_path,
                   help="draw forecast quality against the fraction of training (every recorded "
                   "fraction) here")
    g.add_argument("--forecast-csv", metavar="FILE", type=output_path,
                   help="also write the forecast table as CSV")
    p.set_defaults(func=run)


def _fractions(text: str) -> tuple:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fractions like 0.1,0.25,0.5, got {text!r}") from None
    if not values or not all(0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"fractions must be in [0, 1], got {text!r}")
    return values


def _check_outputs(args) -> None:
    """Refuse a bad output name or ``--top`` before any work."""
    for flag, path, suffixes in (("--out", args.out, None), ("--csv", args.csv, (".csv",)),
                                 ("--forecast-csv", args.forecast_csv, (".csv",)),
                                 ("--forecast-out", args.forecast_out, None)):
        if path:
            check_suffix(flag, path, suffixes or figure_suffixes())
    if args.top < 1:
        raise ValueError(f"`--top` must be >= 1, got {args.top}")


def _save_tables(tables: dict, folder: Path) -> bool:
    """Each table as ``folder/<name>.parquet``; a failed write keeps the bytes and says where."""
    from dnn_spring.sweep._store import table_bytes

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # each write below then fails, keeps its table elsewhere and says so
    written = True
    for name, table in tables.items():
        path = folder / f"{name}.parquet"
        written &= write_output(path, table_bytes(table, path), command="report", what="table",
                                said=f"wrote {{path}} ({len(table)} runs)")
    return written


def _has_trajectories(tables: dict) -> bool:
    return any("trajectory" in t.columns and t["trajectory"].map(
        lambda v: v is not None and len(v) > 0).any() for t in tables.values())


def run(args) -> int:
    """Handler of ``dnn-spring report``."""
    from dnn_spring.sweep._store import load_table
    from dnn_spring.analysis._forecast import (FRACTIONS, forecast, forecast_fractions,
                                               forecast_text, plot_forecast)
    from dnn_spring.analysis._proxy import correlation_text, plot_proxies, proxy_correlations
    from dnn_spring.analysis._weightwatcher import add_weightwatcher

    from .results import require_ok_runs

    _check_outputs(args)
    tables = {}
    for source in args.source:
        name = Path(str(source).rstrip("/")).stem
        if name in tables:
            raise ValueError(f"two sources are both called {name!r}; rename one")
        tables[name] = load_table(source)
        require_ok_runs(tables[name], source)
        if args.weightwatcher:
            if not Path(source).is_dir():
                raise ValueError(f"--weightwatcher needs the results folder of a sweep run with "
                                 f"--save-weights, not the table {source}")
            tables[name] = add_weightwatcher(tables[name], source)
    saved = _save_tables(tables, Path(args.save_tables)) if args.save_tables else True
    result = proxy_correlations(tables, n_boot=args.boot, seed=args.seed)
    clean, total = sum(result.attrs["clean_loss"].values()), sum(result.attrs["ok_runs"].values())
    print(f"train loss: on the clean training labels for {clean} of {total} ok runs "
          f"(records of 0.7.0 on); the rest use the record's last-epoch loss on the labels they "
          f"trained on\n")
    print(correlation_text(result))
    forecast_result = None
    if args.forecast or args.forecast_out or args.forecast_csv or _has_trajectories(tables):
        if not _has_trajectories(tables):
            raise ValueError("no run has a trajectory: the forecast needs a sweep run with "
                             "--trajectory N")
        forecast_result = forecast(tables, args.forecast or FRACTIONS, k=args.top,
                                   n_boot=args.boot, seed=args.seed)
        print()
        print(forecast_text(forecast_result, k=args.top))
    written = saved  # each output on its own: one that fails does not stop the other
    if args.csv:
        written &= write_output(args.csv, result.to_csv(index=False).encode(), command="report",
                                what="table")
    if args.out:
        written &= write_figure(plot_proxies(tables, result), args.out, command="report")
    if args.forecast_csv:
        written &= write_output(args.forecast_csv, forecast_result.to_csv(index=False).encode(),
                                command="report", what="forecast table")
    if args.forecast_out:
        every = forecast(tables, forecast_fractions(tables), k=args.top, n_boot=args.boot,
                         seed=args.seed)
        written &= write_figure(plot_forecast(every), args.forecast_out, command="report")
    return 0 if written else 1
