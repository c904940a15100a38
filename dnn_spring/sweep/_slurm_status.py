"""Following a Slurm sweep: wait for its tasks, and where every run of a folder stands.

Both read the queue with ``squeue`` (:func:`~dnn_spring.sweep._slurm.queue_states`)
and the progress from the records, never ``sacct``.
"""

from __future__ import annotations

import logging
import shutil
import time

import submitit

from dnn_spring.sweep._executors import result_or_error
from dnn_spring.sweep._store import scan_records
from dnn_spring.sweep._slurm import SlurmOptions, is_alive, queue_states, read_manifest

__all__ = ["follow", "sweep_status"]

logger = logging.getLogger("dnn_spring.sweep._runner")

_RUNNING = ("RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "CONFIGURING")


def follow(submitted, out_dir, options: SlurmOptions):
    """Yield ``(chunk, outcome)`` as the submitted tasks finish.

    On Slurm a task is finished when it leaves the queue (a requeued task
    stays); its outcome is then read from the records: ``(key, status)``
    per config, ``"lost"`` for a config without a finished record (its log
    is named in a warning).  submitit's local executors are waited on
    directly.
    """
    if options.cluster in ("local", "debug") or shutil.which("squeue") is None:
        jobs = {id(job): chunk for job, chunk, _ in submitted if job is not None}
        for job in submitit.helpers.as_completed([j for j, _, _ in submitted if j is not None],
                                                 poll_frequency=1):
            yield jobs[id(job)], result_or_error(job.result)
        return
    waiting = {entry["job_id"]: (chunk, entry) for _, chunk, entry in submitted}
    complained = False
    while waiting:
        time.sleep(options.poll_s)
        try:
            states = queue_states(waiting)
        except OSError as exc:
            if not complained:  # said once, then retried quietly
                logger.warning("%s; asking again every %g s", exc, options.poll_s)
                complained = True
            continue
        for job_id in [j for j in waiting if not is_alive(states.get(j))]:
            chunk, entry = waiting.pop(job_id)
            yield chunk, _outcome(chunk, out_dir, entry)


def _outcome(chunk, out_dir, entry) -> list:
    records, _ = scan_records(out_dir, warn=False)
    pairs = [(c.key(), records.get(c.key(), {}).get("status", "lost")) for c in chunk]
    lost = sum(status == "lost" for _, status in pairs)
    if lost:
        logger.warning("task %s left the queue without %d of its %d records; see %s",
                       entry["job_id"], lost, len(pairs), entry["stderr"])
    return pairs


def sweep_status(out_dir) -> dict:
    """Where every known run of a results folder stands: records plus the Slurm queue.

    Returns
    -------
    dict
        ``folder``; counts ``done`` (ok or diverged), ``failed``, ``running``,
        ``pending`` (queued), ``missing`` (submitted, out of the queue, no
        finished record: cancelled or lost; a new submission reruns them),
        ``unknown`` (submitted, no record, and no ``squeue`` here to ask);
        ``queue`` ("slurm", or "unknown" without ``squeue``), ``queue_error``
        (squeue's message when it failed, else None); ``tasks``, one
        dict per submitted task: ``job_id``, ``state`` (``GONE`` once out of
        the queue, ``UNKNOWN`` without ``squeue``), ``runs``, ``done``,
        ``stdout``, ``stderr``.
    """
    tasks = read_manifest(out_dir)  # before the records: a task that ends meanwhile is "done"
    queue_error = None
    try:
        states = queue_states([t["job_id"] for t in tasks]) if tasks else {}
    except OSError as exc:
        states, queue_error = None, str(exc)
    records, _ = scan_records(out_dir, warn=False)
    finished = {k for k, r in records.items() if r.get("status") in ("ok", "diverged")}
    where = {}
    for task in tasks:
        state = "UNKNOWN" if states is None else states.get(task["job_id"], "GONE")
        for key in task["keys"]:
            if is_alive(state) or key not in where:
                where[key] = state
    counts = dict.fromkeys(("done", "failed", "running", "pending", "missing", "unknown"), 0)
    for key in set(records) | set(where):
        state = where.get(key, "GONE")
        if key in finished:
            counts["done"] += 1
        elif state in _RUNNING:
            counts["running"] += 1
        elif is_alive(state):
            counts["pending"] += 1
        elif key in records:
            counts["failed"] += 1
        else:
            counts["unknown" if state == "UNKNOWN" else "missing"] += 1
    rows = [{"job_id": t["job_id"],
             "state": "UNKNOWN" if states is None else states.get(t["job_id"], "GONE"),
             "runs": len(t["keys"]), "done": sum(k in finished for k in t["keys"]),
             "stdout": t.get("stdout"), "stderr": t.get("stderr")} for t in tasks]
    return {"folder": str(out_dir), **counts, "queue": "unknown" if states is None else "slurm",
            "queue_error": queue_error, "tasks": rows}
