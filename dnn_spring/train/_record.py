"""A run record's schema and life cycle.

A run record is a flat, JSON-serialisable dict: every config field of
``RunConfig.flat()``, then the outcome.  Every trainer builds it the same way:

1. :func:`new_record`: every key present, the outcome empty, the run's
   provenance filled (``version``, ``device``, ``threads``,
   ``torch_version``, ``cpu_capability``: another thread count, torch build
   or CPU kind may round float32 training differently; ``reproducible``:
   the mode of :mod:`dnn_spring.train._reproducible` was on);
2. training fills ``stop_reason``, ``epochs_run``, ``train_loss`` and the
   ``trajectory``, and sets ``status`` "diverged" for a run that blew up;
3. :func:`finish_or_fail` adds the accuracies, ``clean_train_loss`` (the
   mean cross-entropy on the clean training labels, eval mode), the load curve of the
   trained model with its shape statistics (in the reproducible mode in
   fixed-order float64: :mod:`dnn_spring.train._fixed_order`) and, when asked, the
   Hessian numbers; or :func:`fail_record` marks the run "failed" with a one-line
   error.

:func:`check_record` states the schema a record file must meet, and
:func:`sense_problems` what a schema-valid record must mean: its config
hashing to its key, accuracies in [0, 1], a status that agrees with its
fields (:mod:`dnn_spring.sweep._store` reads and writes the files).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dnn_spring.train import _reproducible as reproducible
from dnn_spring._version import __version__
from dnn_spring.capture._load_curve import load_curve
from dnn_spring.capture._tracker import LoadCurveTracker
from dnn_spring.train._config import RunConfig, flat_field_names
from dnn_spring.metrics._hessian import hessian_top_eigenvalue, hessian_trace
from dnn_spring.metrics._shape import load_shape

__all__ = ["new_record", "finish_record", "finish_or_fail", "fail_record", "check_record",
           "accuracy", "trajectory_point", "trajectory_tracker", "finite_or_none", "short_repr", "STATUSES", "FINISHED_STATUSES",
           "CURVE_FIELDS", "sense_problems"]

#: Every status a record can have.
STATUSES = ("ok", "diverged", "failed")
#: Statuses of a run that is done for good; a "failed" run is retried.
FINISHED_STATUSES = ("ok", "diverged")
#: The load-curve lists: one entry per load-curve point, all of one length.
CURVE_FIELDS = ("layers", "log_d", "log_inv_d", "log_trace_ratio", "log_d_pinv32", "rank_b", "cond_b")
_RESULT_NUMBERS = ("test_acc", "train_acc", "train_loss", "clean_train_loss", "v", "c", "c_rel", "fit_slope",
                   "fit_r2", "hessian_top", "hessian_trace", "wall_time")
_RESULT_TEXTS = ("regime", "error", "stop_reason", "device", "version", "torch_version",
                 "cpu_capability")


# --------------------------------------------------------------------------- life cycle


def new_record(config: RunConfig, device) -> dict:
    """A run record with every key present and the outcome fields empty.

    Raises ``RuntimeError`` when the reproducible mode is asked for but not
    in effect (:func:`dnn_spring.train._reproducible.check`).
    """
    reproducible.check()
    record = config.flat()
    record.update(
        key=config.key(), status="ok", error=None, stop_reason=None, epochs_run=0,
        train_loss=None, clean_train_loss=None, train_acc=None, test_acc=None, layers=[], log_d=[], log_inv_d=[],
        log_trace_ratio=[], log_d_pinv32=[], rank_b=[], cond_b=[], near_singular=[], v=None, c=None, c_rel=None, fit_slope=None, fit_r2=None,
        regime=None, hessian_top=None, hessian_trace=None, trajectory=[], wall_time=0.0,
        device=str(device), version=__version__, threads=torch.get_num_threads(),
        torch_version=torch.__version__, cpu_capability=_cpu_capability(),
        reproducible=reproducible.enabled(),
    )
    return record


def _cpu_capability() -> str:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def finite_or_none(x) -> "float | None":
    """``float(x)``, or None when it is inf or NaN (JSON has neither)."""
    x = float(x)
    return x if math.isfinite(x) else None


def accuracy(model, x: Tensor, y: Tensor, *, batch_size: int = 4096) -> float:
    """Fraction of ``x`` (shape (n, ...)) the model, in eval mode, labels as ``y``."""
    return _accuracy_and_loss(model, x, y, batch_size)[0]


def trajectory_tracker(model, data) -> LoadCurveTracker:
    """The tracker of a run's trajectory: the whole clean training set, no warnings, this process alone."""
    return LoadCurveTracker(model, data.x_train, data.y_train, sample_size=None,
                            n_classes=data.n_classes, warn=False, distributed=False)


def trajectory_point(model, data, tracker: "LoadCurveTracker | None" = None) -> dict:
    """``{"log_d", "train_acc", "train_loss"}`` of ``model`` on the clean training set, eval mode.

    ``train_loss`` is the mean cross-entropy on the clean labels. In the reproducible
    mode every number is the fixed-order float64 one (:mod:`~dnn_spring.train._fixed_order`).
    """
    if reproducible.enabled():
        from dnn_spring.train._fixed_order import exact_accuracy, exact_curve, exact_loss

        frame, logits = exact_curve(model, data.x_train, data.y_train, data.n_classes, inverse=False)
        log_d, y = frame["log_d"], data.y_train.cpu()
        acc, loss = exact_accuracy(logits, y), exact_loss(logits, y)
    else:
        tracker = tracker or trajectory_tracker(model, data)
        log_d = tracker.measure(model, keep=False)["log_d"]
        acc, loss = _accuracy_and_loss(model, data.x_train, data.y_train)
    return {"log_d": [finite_or_none(v) for v in log_d], "train_acc": acc,
            "train_loss": finite_or_none(loss)}


@torch.no_grad()
def _accuracy_and_loss(model, x: Tensor, y: Tensor, batch_size: int = 4096) -> tuple:
    was, hits, total = model.training, 0, 0.0
    model.eval()
    try:
        for i in range(0, len(x), batch_size):
            logits, yb = model(x[i:i + batch_size]).float(), y[i:i + batch_size]
            hits += int((logits.argmax(1) == yb).sum())
            total += float(F.cross_entropy(logits, yb, reduction="sum"))
    finally:
        model.train(was)
    return hits / max(len(x), 1), total / max(len(x), 1)


def _hessian(model, data, record: dict) -> None:
    was = model.training
    model.eval()
    try:
        params = [p for p in model.parameters() if p.requires_grad]
        loss_fn = lambda: F.cross_entropy(model(data.x_train), data.y_train)  # noqa: E731
        gen = torch.Generator().manual_seed(int(record["seed"]))
        record["hessian_top"] = finite_or_none(hessian_top_eigenvalue(loss_fn, params, generator=gen))
        record["hessian_trace"] = finite_or_none(hessian_trace(loss_fn, params, generator=gen))
    finally:
        model.train(was)


def finish_record(record: dict, model, data, *, hessian: bool) -> dict:
    """Fill accuracies, the load curve, its shape and Hessian numbers from ``model``."""
    if reproducible.enabled():  # float64, in an order no kernel changes
        from dnn_spring.train._fixed_order import evaluate

        record["train_acc"], record["test_acc"], loss, frame = evaluate(model, data)
    else:
        record["train_acc"], loss = _accuracy_and_loss(model, data.x_train, data.y_train)
        record["test_acc"] = accuracy(model, data.x_test, data.y_test)
        # Records keep rank_b and cond_b per point; the user reads them instead of a warning.
        frame = load_curve(model, data.x_train, labels=data.y_train, n_classes=data.n_classes,
                           inverse=True, warn=False,  # records keep log_inv_d and log_d_pinv32
                           distributed=False)  # one run's own model, never summed over ranks
    record["clean_train_loss"] = finite_or_none(loss)
    record["layers"] = [str(v) for v in frame["layer"]]
    for column in ("log_d", "log_inv_d", "log_trace_ratio", "log_d_pinv32", "cond_b"):
        record[column] = [finite_or_none(v) for v in frame[column]]
    record["rank_b"] = [int(v) for v in frame["rank_b"]]
    record["near_singular"] = [str(v) for v in frame.loc[frame["near_singular"], "layer"]]
    try:
        shape = load_shape(frame)
    except ValueError as exc:  # e.g. a collapsed layer gives log D = inf
        record["error"] = f"no load-curve shape: {exc}"
    else:
        record.update(v=shape.v, c=shape.c, c_rel=shape.c_rel, fit_slope=shape.slope,
                      fit_r2=shape.r2, regime=shape.regime)
    if hessian:
        _hessian(model, data, record)
    return record


def fail_record(record: dict, exc: BaseException) -> dict:
    """Mark ``record`` as failed with a one-line message of ``exc``."""
    text = str(exc).strip().splitlines()
    record.update(status="failed", stop_reason="error",
                  error=f"{type(exc).__name__}: {text[0] if text else ''}")
    return record


@torch.no_grad()
def _blown_up(model, data) -> bool:
    """Does ``model`` give non-finite logits on the training set (eval mode)?"""
    was = model.training
    model.eval()
    try:
        return not bool(torch.isfinite(model(data.x_train)).all())
    finally:
        model.train(was)


def finish_or_fail(record: dict, model, data, *, hessian: bool) -> dict:
    """:func:`finish_record`; an error makes the record "failed", or "diverged"
    when the trained weights overflow the forward pass (a blow-up in the last
    update, whose loss and weights were still finite)."""
    try:
        finish_record(record, model, data, hessian=hessian)
    except Exception as exc:  # noqa: BLE001 - a run never kills its caller
        fail_record(record, exc)
        try:
            if _blown_up(model, data):
                record.update(status="diverged", stop_reason="diverged")
        except Exception:  # noqa: BLE001 - keep "failed"
            pass
    return record


# --------------------------------------------------------------------------- schema


def _config_types() -> dict:
    return {name: type(value) for name, value in RunConfig().flat().items()}


def short_repr(value) -> str:
    """``repr(value)``, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _config_problem(name: str, kind: type, value) -> "str | None":
    if kind is float:
        ok = _is_number(value) and math.isfinite(value)
        rule = "a finite number"
    elif kind is int:
        ok, rule = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif kind is bool:
        ok, rule = isinstance(value, bool), "true or false"
    else:
        ok, rule = isinstance(value, str), "a string"
    return None if ok else f"`{name}` must be {rule}, got {short_repr(value)}"


def _curve_problem(name: str, value) -> "str | None":
    if name == "layers":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else f"`layers` must be a list of strings, got {short_repr(value)}"
    ok = isinstance(value, list) and all(v is None or _is_number(v) for v in value)
    return None if ok else f"`{name}` must be a list of numbers or null, got {short_repr(value)}"


def _trajectory_problem(value) -> "str | None":
    if not isinstance(value, list):
        return f"`trajectory` must be a list, got {short_repr(value)}"
    for i, step in enumerate(value):
        ok = (isinstance(step, dict) and isinstance(step.get("epoch"), int)
              and not isinstance(step.get("epoch"), bool)
              and _curve_problem("log_d", step.get("log_d")) is None
              and all(step.get(k) is None or _is_number(step[k]) for k in ("train_acc", "train_loss")))
        if not ok:
            return (f'`trajectory[{i}]` must be {{"epoch": int, "log_d": list of numbers or null, '
                    f'optional "train_acc" and "train_loss": number or null}}, got {short_repr(step)}')
    return None


def check_record(record) -> list:
    """Every way ``record`` breaks the run-record schema (empty when it is fine).

    The schema: every config field of ``RunConfig.flat()`` present with its
    type (a float field a finite number, an int field an integer, ...);
    ``key`` a string; ``status`` one of "ok", "diverged", "failed"; when
    present, ``test_acc``, ``train_acc``, ``train_loss``, ``clean_train_loss``, ``v``, ``c``,
    ``c_rel``, ``fit_slope``, ``fit_r2``, ``hessian_*`` and ``wall_time`` a
    number or null, ``epochs_run`` and ``threads`` an integer or null,
    ``regime``, ``error``, ``stop_reason``, ``device``, ``version``,
    ``torch_version`` and ``cpu_capability`` a string or null, ``layers``
    a list of strings and ``log_d``, ``log_inv_d``, ``log_trace_ratio``,
    ``log_d_pinv32``, ``rank_b``, ``cond_b`` (when present; records before
    0.5.0 lack the last three) lists of numbers or null, all of one length, and ``trajectory`` a list of
    ``{"epoch": int, "log_d": list}``, with ``train_acc`` and ``train_loss`` numbers (0.7.0 on).  Other fields are free.

    Returns
    -------
    list of str
        One message per problem, e.g. "`test_acc` must be a number or null,
        got 'high'".
    """
    if not isinstance(record, dict):
        return [f"expected a JSON object, got {type(record).__name__}"]
    problems = []
    if not isinstance(record.get("key"), str):
        problems.append(f"`key` must be a string, got {short_repr(record.get('key'))}")
    if record.get("status") not in STATUSES:
        problems.append(f"`status` must be one of {set(STATUSES)}, got {short_repr(record.get('status'))}")
    for name, kind in _config_types().items():
        if name not in record:
            problems.append(f"config field `{name}` is missing")
        else:
            problems.append(_config_problem(name, kind, record[name]))
    for name in _RESULT_NUMBERS:
        value = record.get(name)
        if value is not None and not _is_number(value):
            problems.append(f"`{name}` must be a number or null, got {short_repr(value)}")
    for name in ("epochs_run", "threads"):
        value = record.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            problems.append(f"`{name}` must be an integer or null, got {short_repr(value)}")
    for name in _RESULT_TEXTS:
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            problems.append(f"`{name}` must be a string or null, got {short_repr(value)}")
    curves = [name for name in CURVE_FIELDS if name in record]
    bad = [_curve_problem(name, record[name]) for name in curves]
    problems.extend(bad)
    if not any(bad) and len({len(record[name]) for name in curves}) > 1:
        lengths = ", ".join(f"{name} {len(record[name])}" for name in curves)
        problems.append(f"the load-curve lists must have one length, got {lengths}")
    if "trajectory" in record:
        problems.append(_trajectory_problem(record["trajectory"]))
    problems = [p for p in problems if p]
    return problems or sense_problems(record)


# --------------------------------------------------------------------------- sense


def _key_problem(record: dict) -> "str | None":
    try:
        config = RunConfig.from_flat({name: record[name] for name in flat_field_names()})
    except ValueError as exc:
        return f"its config is invalid: {str(exc).splitlines()[0]}"
    if config.key() != record["key"]:
        return (f"its config hashes to {config.key()}, not to its `key` {record['key']}: "
                "a config field was changed after the run")
    return None


def _range_problems(record: dict) -> list:
    problems = []
    for name in ("test_acc", "train_acc"):
        value = record.get(name)
        if value is not None and not 0.0 <= value <= 1.0:
            problems.append(f"`{name}` must lie in [0, 1], got {short_repr(value)}")
    for name in ("train_loss", "wall_time"):
        value = record.get(name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            problems.append(f"`{name}` must be a finite number >= 0, got {short_repr(value)}")
    epochs_run = record.get("epochs_run")
    if epochs_run is not None and not 0 <= epochs_run <= record["epochs"]:
        problems.append(f"`epochs_run` must lie in [0, epochs={record['epochs']}], got {epochs_run}")
    return problems


def _status_problems(record: dict) -> list:
    status, reason = record["status"], record.get("stop_reason")
    problems = []
    if status == "failed" and "error" in record and record["error"] is None:
        problems.append("a failed record must say why in `error`, got null")
    if reason is not None and (status == "diverged") != (reason == "diverged"):
        problems.append(f"`status` {status!r} contradicts `stop_reason` {reason!r}")
    if status != "ok":
        return problems
    for name in ("train_loss", "train_acc", "test_acc"):
        if name in record and record[name] is None:
            problems.append(f"an ok record must have `{name}`, got null")
    log_d = record.get("log_d")
    if log_d is not None and not any(v is not None for v in log_d):
        problems.append(f"an ok record must have a load curve, got `log_d` {short_repr(log_d)}")
    width = len(record.get("layers", log_d or []))
    for i, step in enumerate(record.get("trajectory") or []):
        if len(step["log_d"]) != width:
            problems.append(f"`trajectory[{i}].log_d` has {len(step['log_d'])} points, "
                            f"the load curve {width}")
            break
    return problems


def sense_problems(record: dict) -> list:
    """Every way a schema-valid ``record`` makes no sense (empty when it does).

    The config hashes to ``key`` (a config field edited after the run is
    caught); accuracies lie in [0, 1]; ``train_loss`` and ``wall_time`` are
    finite and >= 0; ``0 <= epochs_run <= epochs``; a "failed" record has an
    ``error``; ``status`` is "diverged" exactly when ``stop_reason`` is; an
    "ok" record has its losses and accuracies (where the fields are present),
    a ``log_d`` that is not all null, and trajectory curves as long as its
    load curve.
    """
    problems = [_key_problem(record)] if isinstance(record.get("key"), str) else []
    problems += _range_problems(record) + _status_problems(record)
    return [p for p in problems if p]
