"""The ``sweep`` sub-command (phase diagrams, docs/science.md#sweeps); ``collect`` and ``plot`` are in :mod:`.results`.

    dnn-spring sweep ns_nl --preset quick            # train, resumable
    dnn-spring collect results/ns_nl_quick           # -> results/ns_nl_quick.parquet
    dnn-spring plot phase-diagram results/ns_nl_quick --out figs/pd_ns_nl_quick.png
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from ._limits import check_grid, check_model, check_n_train, check_threads
from ._output import output_path
from .results import add_collect, add_plot

__all__ = ["add_parser"]


def _add_sweep(subparsers) -> None:
    from dnn_spring.sweep._grids import PRESETS, SWEEPS
    from dnn_spring.sweep import EXECUTORS

    p = subparsers.add_parser(
        "sweep", help="run a phase-diagram sweep (resumable)",
        description="Train every config of a sweep grid that has no finished record in the "
        "results folder; one JSON record per run. Rerun to resume after a kill.")
    p.add_argument("sweep", choices=sorted(SWEEPS), help="which sweep of the paper's phase diagrams")
    p.add_argument("--preset", choices=PRESETS, default="paper",
                   help="paper: the paper's grid, seeds and epochs; quick: coarse grid on the embedded MNIST (mnist5k)")
    p.add_argument("--dataset", help="override the data set of every run")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="on a CUDA device, replay each batched training step from a CUDA graph "
                   "(sets DNN_SPRING_CUDA_GRAPHS=1; ignored on the CPU)")
    p.add_argument("--out", type=output_path, help="results folder (default results/<sweep>, "
                   "results/<sweep>_quick for the quick preset)")
    p.add_argument("--workers", type=int, help="local worker processes, >= 1 (default: the "
                   "number of CPUs on cpu, 1 on a GPU); with slurm, jobs per group (default 1)")
    p.add_argument("--threads", type=int, help="torch threads per worker, >= 1 (default: "
                   "OMP_NUM_THREADS if set, else CPUs // workers); recorded in every record")
    p.add_argument("--seeds", type=int, help="number of seeds (default: the preset's)")
    p.add_argument("--base-seed", type=int, default=0, help="root of the seed sequence")
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field; a comma list for the axis or `slope` "
                   "replaces its values (e.g. --set noise=0,0.4,0.8)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the configs (one JSON line each, with `done`) and exit")
    p.add_argument("--no-batch", dest="batch", action="store_false",
                   help="train one run at a time instead of batched groups")
    p.add_argument("--keep-failed", dest="retry_failed", action="store_false",
                   help="do not rerun runs recorded as failed")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: worker processes here (default); slurm: submit a job array and "
                   "return (--wait to follow it); debug: inline, for tests")
    _add_slurm_flags(p)
    p.add_argument("--save-weights", action="store_true",
                   help="also keep each ok run's trained network in <out>/weights/<key>.pt "
                   "(about 0.4 MB for the paper's MLP), for `dnn-spring report --weightwatcher`")
    p.add_argument("--trajectory", type=int, metavar="N",
                   help="record N load curves per run, every epochs/N epochs: sets curve_every; "
                   "needed by the report's forecast")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--reproducible", action="store_true",
                   help="records the same bit for bit on every x86 CPU with AVX2 (same torch "
                   "build and threads); sets DNN_SPRING_REPRODUCIBLE=1 for the workers and tasks "
                   "(the default of --executor slurm)")
    p.add_argument("--native", action="store_true",
                   help="with --executor slurm, train the tasks without the reproducible mode")
    p.set_defaults(func=_run_sweep)


def _add_slurm_flags(p) -> None:
    g = p.add_argument_group("Slurm (with --executor slurm; one array task per chunk)")
    g.add_argument("--wait", action="store_true",
                   help="follow the tasks with a progress bar until they leave the queue")
    g.add_argument("--partition", help="partition (default: the cluster's)")
    g.add_argument("--time", type=int, default=240, help="time limit per task, minutes (default 240); "
                   "a task near it checkpoints and requeues itself")
    g.add_argument("--gpus", type=int, default=0, help="GPUs per task (default 0)")
    g.add_argument("--cpus", type=int, default=2, help="CPUs per task (default 2)")
    g.add_argument("--mem", type=float, help="memory per task, GB (default: the cluster's)")
    g.add_argument("--parallel", type=int, default=64,
                   help="most array tasks running at once (default 64)")
    g.add_argument("--qos", help="quality of service (default: the cluster's)")
    g.add_argument("--account", help="account to charge (default: the user's)")
    g.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch flag, e.g. --sbatch constraint=a100; repeatable")
    g.add_argument("--signal-delay", type=int, default=120, metavar="SECONDS",
                   help="checkpoint this long before the time limit (default 120)")
    g.add_argument("--requeues", type=int, default=3,
                   help="most times a task requeues itself at its time limit (default 3)")


def _overrides(args) -> dict:
    from dnn_spring.sweep._grids import parse_value

    out = {}
    for item in args.set:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"`--set` must be KEY=VALUE, got {item!r}")
        if name.strip() in out:
            raise ValueError(f"`--set {name.strip()}` is given twice; give it once")
        out[name.strip()] = parse_value(name.strip(), text)
    for flag, field in (("--dataset", "dataset"), ("--epochs", "epochs")):
        value = getattr(args, field)
        if value is None:
            continue
        if field in out:
            raise ValueError(f"`{flag} {value}` and `--set {field}=...` both set `{field}`; "
                             "give one of them")
        out[field] = value
    return out


def _grid(args) -> list:
    """The sweep's configs, its sizes checked before the seeds are expanded."""
    from dnn_spring.sweep._grids import expand_grid

    if args.base_seed < 0:
        raise ValueError(f"`--base-seed` must be >= 0, got {args.base_seed}")
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"`--seeds` must be >= 1, got {args.seeds}")
    overrides = _overrides(args)
    cells = expand_grid(args.sweep, args.preset, overrides, n_seeds=1, base_seed=args.base_seed)
    if args.seeds is not None:
        check_grid(len(cells) * args.seeds)
    for config in {c.replace(seed=0, slope=0.0).key(): c for c in cells}.values():
        check_n_train(config, args.device)
        check_model(config, args.device)
    configs = expand_grid(args.sweep, args.preset, overrides, n_seeds=args.seeds,
                          base_seed=args.base_seed)
    if args.trajectory is not None:
        if args.trajectory < 1:
            raise ValueError(f"`--trajectory` must be >= 1 curves per run, got {args.trajectory}")
        if "curve_every" in overrides:
            raise ValueError("`--trajectory` sets curve_every: give it or `--set curve_every=...`, "
                             "not both")
        configs = [c.replace(curve_every=max(1, c.train.epochs // args.trajectory))
                   for c in configs]
    return configs


def _default_workers(device: str) -> int:
    return 1 if not str(device).startswith("cpu") else max(1, os.cpu_count() or 1)


def _set_mode(args) -> None:
    """The reproducible mode: on with --reproducible, and by default on Slurm."""
    if args.reproducible and args.native:
        raise ValueError("`--reproducible` and `--native` exclude each other")
    if args.reproducible:
        from dnn_spring.train._reproducible import reexecute

        reexecute("dnn-spring sweep")
    elif args.executor == "slurm" and not args.native:
        from dnn_spring.train._reproducible import environment

        # a cluster's nodes rarely share one CPU model, and a requeued task may resume on
        # another: its tasks run in the mode (sbatch passes this environment on)
        os.environ.update(environment())


def _run_sweep(args) -> int:
    from dnn_spring.train._cuda_graphs import ENV_FLAG
    from dnn_spring.sweep._grids import default_out_dir
    from dnn_spring.sweep._locks import FolderBusyError
    from dnn_spring.sweep._runner import RecordWriteError, run_sweep

    if args.workers is not None and args.workers < 1:
        raise ValueError(f"`--workers` must be >= 1, got {args.workers}")
    _set_mode(args)
    if args.cuda_graphs:
        os.environ[ENV_FLAG] = "1"  # read by every group, in this process and its workers
    check_threads(args.threads)
    configs = _grid(args)
    out = Path(args.out or default_out_dir(args.sweep, args.preset))
    if args.dry_run:
        return _dry_run(args, configs, out)
    # On Slurm, --workers is how many jobs each group is spread over (default 1).
    workers = args.workers
    if workers is None:
        workers = 1 if args.executor == "slurm" else _default_workers(args.device)
    slurm = _slurm_options(args)
    if args.wait and args.executor != "slurm":
        raise ValueError("`--wait` goes with --executor slurm (local sweeps always wait)")
    from dnn_spring.train._preempt import Preempted, stop_on_signals, stop_signal

    polite = stop_on_signals() if args.executor != "slurm" else contextlib.nullcontext()
    try:
        with polite:
            try:
                extra = {}
                if args.save_weights:
                    import functools

                    from dnn_spring.sweep._task import run_task

                    extra["chunk_fn"] = functools.partial(run_task, save_weights=True)
                summary = run_sweep(configs, out, executor=args.executor, workers=workers,
                                    device=args.device, batch=args.batch,
                                    retry_failed=args.retry_failed, progress=args.progress,
                                    desc=args.sweep, slurm=slurm, threads=args.threads,
                                    wait=args.wait or args.executor != "slurm", **extra)
            except Preempted as exc:
                return _stopped(stop_signal() or exc.signum, out)
    except FolderBusyError as exc:  # another local sweep runs in this folder
        print(f"dnn-spring sweep: error: {exc}", file=sys.stderr)
        return 1
    except RecordWriteError as exc:  # one line per unwritten record; the sweep stopped
        for line in exc.failures or [str(exc)]:
            print(f"dnn-spring sweep: error: {line}", file=sys.stderr)
        return 1
    if args.executor == "slurm" and not args.wait:
        _print_submission(args.sweep, summary, out)
        return 0
    return _finish(args.sweep, summary, configs, out)


def _dry_run(args, configs, out) -> int:
    """Print one JSON line per distinct config and the counts; train nothing."""
    from dnn_spring.sweep._runner import pending_configs

    repeated = len(configs)
    configs = list({c.key(): c for c in configs}.values())  # a config once however often listed
    repeated -= len(configs)
    todo = {c.key() for c in pending_configs(configs, out, retry_failed=args.retry_failed)}
    try:
        for config in configs:
            print(json.dumps({"key": config.key(), "done": config.key() not in todo,
                              **config.flat()}))
    except BrokenPipeError:  # `| head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    twice = f" ({repeated} repeated in the grid, counted once)" if repeated else ""
    print(f"{args.sweep} ({args.preset}): {len(configs)} distinct configs{twice}, "
          f"{len(configs) - len(todo)} finished, {len(todo)} to run; records in {out}",
          file=sys.stderr)
    return 0


def _finish(sweep, summary, configs, out) -> int:
    """The sweep's last lines: the counts, each failure reason once; the exit status.

    Any failed or lost run makes the exit status 1 (the others' records are kept).
    """
    print(f"{sweep}: {summary['total']} runs, {summary['skipped']} already done; ran "
          f"{summary['ran']}: {summary['ok']} ok, {summary['diverged']} diverged, "
          f"{summary['failed']} failed, {summary['lost']} lost; "
          f"{summary['wall_time']:.1f} s; records in {out}", file=sys.stderr)
    if summary["failed"]:
        for reason, count in _failure_reasons(configs, out):
            print(f"dnn-spring sweep: {count} run{'s' * (count != 1)} failed: {reason}",
                  file=sys.stderr)
    return 1 if summary["lost"] or summary["failed"] else 0


def _stopped(signum, out) -> int:
    """Say that a signal stopped the sweep and what it kept; the exit status 128 + signal."""
    import signal

    from dnn_spring.sweep._task import CHECKPOINT_DIR

    signum = int(signum or signal.SIGTERM)
    saved = sorted((Path(out) / CHECKPOINT_DIR).glob("*.pt"))
    kept = (f"{len(saved)} running group{'s' * (len(saved) != 1)} saved in "
            f"{Path(out) / CHECKPOINT_DIR}" if saved else "no batched group was running")
    print(f"dnn-spring sweep: stopped by {signal.Signals(signum).name}: {kept}; finished "
          f"records are in {out}; rerun the same command to go on", file=sys.stderr)
    return 128 + signum


def _failure_reasons(configs, out) -> list:
    """``(reason, count)`` of the grid's failed records, the most common first."""
    from collections import Counter

    from dnn_spring.sweep._store import scan_records

    keys = {c.key() for c in configs}
    records, _ = scan_records(out, warn=False)
    reasons = Counter(str(r.get("error") or "no reason recorded") for k, r in records.items()
                      if k in keys and r.get("status") == "failed")
    return reasons.most_common()


def _slurm_options(args):
    from dnn_spring.sweep._runner import SlurmOptions

    for name in ("time", "cpus", "parallel"):
        if getattr(args, name) < 1:
            raise ValueError(f"`--{name}` must be >= 1, got {getattr(args, name)}")
    if min(args.gpus, args.signal_delay, args.requeues) < 0 or (args.mem is not None and args.mem <= 0):
        raise ValueError("`--gpus`, `--signal-delay` and `--requeues` must be >= 0 and `--mem` > 0")
    options = SlurmOptions(partition=args.partition, time_min=args.time, gpus=args.gpus,
                           cpus=args.cpus, mem_gb=args.mem, parallel=args.parallel, qos=args.qos,
                           account=args.account, extra=tuple(args.sbatch),
                           signal_delay_s=args.signal_delay, max_requeues=args.requeues)
    options.parameters()  # a bad --sbatch flag fails here, before anything is submitted
    return options


def _print_submission(sweep, summary, out) -> None:
    ids = summary["job_ids"]
    arrays = sorted({i.split("_")[0] for i in ids})
    if len(ids) == 1 and "_" not in ids[0]:  # submitit sends a single task as a plain job
        where = f"as Slurm job {ids[0]}"
    else:
        tasks = f"{len(ids)} task{'s' * (len(ids) != 1)}"
        where = f"as job array {', '.join(arrays)} ({tasks})" if ids else "(nothing to submit)"
    print(f"{sweep}: {summary['total']} runs, {summary['skipped']} already done, "
          f"{summary['queued']} still queued from earlier submissions; submitted "
          f"{summary['submitted']} {where}", file=sys.stderr)
    print(f"follow it:     dnn-spring status {out}", file=sys.stderr)
    print(f"when it ends:  dnn-spring collect {out}", file=sys.stderr)


def add_parser(subparsers) -> None:
    """Register ``sweep``, ``collect`` and ``plot``."""
    if not logging.getLogger("dnn_spring").handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("dnn-spring: %(message)s"))
        logging.getLogger("dnn_spring").addHandler(handler)
        logging.getLogger("dnn_spring").setLevel(logging.INFO)
    _add_sweep(subparsers)
    add_collect(subparsers)
    add_plot(subparsers)
