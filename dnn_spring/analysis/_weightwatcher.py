"""WeightWatcher's weights-only proxies of the same trained models, for the report.

``pip install "dnn-spring[weightwatcher]"``.  A sweep run with ``--save-weights``
keeps each ok run's network in ``<out>/weights/<key>.pt``;
:func:`add_weightwatcher` reads them and adds ``ww_alpha`` and
``ww_alpha_weighted`` (WeightWatcher's layer averages of the power-law
exponent α of each weight matrix's eigenvalue spectrum, and of α weighted by the
log of its largest eigenvalue) to the table, so that the report ranks them
beside the load curve on the same runs.  The numbers are kept in
``<out>/weights/weightwatcher.csv``: a second report reads them back.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["add_weightwatcher", "weightwatcher_alphas", "MissingWeightsError"]

_CACHE = "weightwatcher.csv"


class MissingWeightsError(ValueError):
    """The sweep kept no weights: WeightWatcher cannot be computed for it."""


@contextlib.contextmanager
def _quiet():
    """WeightWatcher's log lines, warnings and prints (one per power-law fit) kept off the report."""
    log = logging.getLogger("weightwatcher")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def _import():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        with _quiet():
            import weightwatcher
    except ImportError:
        raise ImportError('WeightWatcher is not installed: pip install "dnn-spring[weightwatcher]"') from None
    finally:  # its import configures the root logger, which would print every warning twice
        root.handlers[:] = handlers
        root.setLevel(level)
    return weightwatcher


def weightwatcher_alphas(model) -> tuple:
    """``(alpha, alpha_weighted)`` of WeightWatcher's summary of ``model``."""
    ww = _import()
    with _quiet():
        watcher = ww.WeightWatcher(model=model)
        summary = watcher.get_summary(watcher.analyze())
    return float(summary["alpha"]), float(summary["alpha_weighted"])


def add_weightwatcher(table: pd.DataFrame, source) -> pd.DataFrame:
    """``table`` with ``ww_alpha`` and ``ww_alpha_weighted`` from the weights under ``source``.

    Parameters
    ----------
    table : DataFrame
        The collect table of the results folder ``source``.
    source : str or Path
        The results folder of a sweep run with ``--save-weights``.

    Raises
    ------
    MissingWeightsError
        ``source`` has no ``weights/`` folder, or none of the table's ok runs has its file.
    """
    import torch

    from dnn_spring.sweep._task import WEIGHTS_DIR
    from dnn_spring.train._saved import from_saved

    folder = Path(source) / WEIGHTS_DIR
    ok = table[table["status"] == "ok"]
    keys = [k for k in ok["key"] if (folder / f"{k}.pt").is_file()] if folder.is_dir() else []
    if not keys:
        raise MissingWeightsError(
            f"WeightWatcher cannot be computed for {source}: the sweep did not save its weights "
            f"(run it again with --save-weights; finished runs are not retrained, so delete "
            f"the records or use another --out)")
    _import()
    cache = folder / _CACHE
    known = pd.read_csv(cache, index_col="key") if cache.is_file() else pd.DataFrame(
        columns=["ww_alpha", "ww_alpha_weighted"]).rename_axis("key")
    from tqdm.auto import tqdm

    fresh = {}
    todo = [k for k in keys if k not in known.index]
    for key in tqdm(todo, desc="WeightWatcher", unit="run", disable=None, leave=False):
        path = folder / f"{key}.pt"
        fresh[key] = weightwatcher_alphas(from_saved(torch.load(path, weights_only=True), path))
    if fresh:
        new = pd.DataFrame.from_dict(fresh, orient="index", columns=["ww_alpha", "ww_alpha_weighted"])
        known = pd.concat([known, new.rename_axis("key")])
        try:
            known.to_csv(cache)
        except OSError:
            pass  # a read-only folder: compute again next time
    out = table.copy()
    for column in ("ww_alpha", "ww_alpha_weighted"):
        out[column] = out["key"].map(known[column]).astype(float).where(lambda s: np.isfinite(s))
    return out
