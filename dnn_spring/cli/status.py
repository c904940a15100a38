"""The ``status`` sub-command: where a sweep's runs stand, on disk and in the Slurm queue.

    dnn-spring status results/ns_nl          # one sweep folder
    dnn-spring status results --json         # every sweep folder under results/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["add_parser", "sweep_folders"]


def add_parser(subparsers) -> None:
    """Register ``status``."""
    p = subparsers.add_parser(
        "status", help="done, failed, running and pending runs of sweep folders",
        description="Per sweep folder: runs done (ok or diverged), failed, running and pending "
        "in the Slurm queue, and missing (submitted, out of the queue, without a record: "
        "submit the sweep again to rerun them), from the records on disk and squeue; then "
        "each Slurm task still queued or with unfinished runs, with its log files.")
    p.add_argument("folder", help="a results folder, or a folder of results folders")
    p.add_argument("--json", action="store_true", help="print one JSON object per line instead")
    p.add_argument("--all-tasks", action="store_true", help="list finished tasks too")
    p.set_defaults(func=run)


def sweep_folders(folder) -> list:
    """``folder`` itself when it holds records or Slurm tasks, else its sub-folders that do."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"results folder {str(folder)!r} does not exist")

    def is_sweep(path: Path) -> bool:
        return (path / ".slurm" / "jobs.jsonl").is_file() or any(path.glob("*.json"))

    if is_sweep(folder):
        return [folder]
    found = sorted(p for p in folder.iterdir() if p.is_dir() and is_sweep(p))
    if not found:
        raise FileNotFoundError(f"no run records or Slurm tasks in {str(folder)!r} or its sub-folders")
    return found


def run(args) -> int:
    """Handler of ``dnn-spring status``."""
    from dnn_spring.sweep._slurm_status import sweep_status

    for path in sweep_folders(args.folder):
        status = sweep_status(path)
        if args.json:
            print(json.dumps(status))
            continue
        print(_summary_line(status))
        if status["queue_error"]:
            print(f"  the queue could not be read ({status['queue_error']}): task states UNKNOWN")
        shown = [t for t in status["tasks"]
                 if args.all_tasks or t["state"] != "GONE" or t["done"] < t["runs"]]
        if shown:
            print(f"  {'task':<14} {'state':<11} {'runs':>5} {'done':>5}  log (stderr)")
        for task in shown:
            print(f"  {task['job_id']:<14} {task['state']:<11} {task['runs']:>5} {task['done']:>5}"
                  f"  {task['stderr']}")
    sys.stdout.flush()
    return 0


def _summary_line(status: dict) -> str:
    parts = [f"{status[k]} {k}" for k in ("done", "failed", "running", "pending", "missing")]
    if status["unknown"]:
        parts.append(f"{status['unknown']} unknown (no squeue here)")
    line = f"{status['folder']}: " + ", ".join(parts)
    if status["missing"]:
        line += " (submit the sweep again to rerun the missing ones)"
    return line
