"""Records that pass the type checks but make no sense are corrupt (issue 30, item 1).

Each case edits one record of a real (tiny) sweep, as a hand edit or a buggy
tool would: the sweep names it, moves it to ``.bad/`` and trains it again, and
``collect`` leaves it out of the table.
"""

import json

import pytest

from dnn_spring.sweep._grids import expand_grid
from dnn_spring.sweep._store import collect
from dnn_spring.train._record import check_record, sense_problems
from dnn_spring.sweep._runner import run_sweep

CASES = {
    "accuracy above one": ({"test_acc": 5.0}, "`test_acc` must lie in [0, 1], got 5.0"),
    "negative accuracy": ({"train_acc": -0.1}, "`train_acc` must lie in [0, 1]"),
    "edited config, key kept": ({"slope": 0.77, "noise": 0.55}, "a config field was changed"),
    "ok with every log_d null": ("null_curve", "an ok record must have a load curve"),
    "ok without a loss": ({"train_loss": None}, "an ok record must have `train_loss`"),
    "negative loss": ({"train_loss": -1.0}, "`train_loss` must be a finite number >= 0"),
    "more epochs than asked": ({"epochs_run": 99}, "`epochs_run` must lie in [0, epochs=1]"),
    "diverged but stopped on epochs": ({"status": "diverged"}, "contradicts `stop_reason`"),
    "failed without a reason": ({"status": "failed", "stop_reason": "error", "error": None},
                                "a failed record must say why"),
    "invalid config": ({"depth": 0}, "its config is invalid"),
    "short trajectory": ("short_trajectory", "`trajectory[0].log_d` has 1 points"),
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two real one-epoch runs with a trajectory, and a pristine copy of their records."""
    out = tmp_path_factory.mktemp("sweep")
    configs = expand_grid("ns_nl", "quick", {"depth": 3, "width": 8, "epochs": 1, "n_train": 100,
                                             "noise": [0.0, 0.5], "slope": 0.0,
                                             "curve_every": 1}, n_seeds=1)
    summary = run_sweep(configs, out, executor="debug", progress=False)
    assert summary["ok"] == 2
    return out, configs, {p.name: p.read_text() for p in out.glob("*.json")}


def _edit(record: dict, change) -> dict:
    if change == "null_curve":
        return {**record, "log_d": [None] * len(record["log_d"])}
    if change == "short_trajectory":
        return {**record, "trajectory": [{"epoch": 1, "log_d": [1.0]}]}
    return {**record, **change}


def test_the_real_records_make_sense(sweep):
    out, _, pristine = sweep
    for text in pristine.values():
        assert check_record(json.loads(text)) == []


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_record_that_makes_no_sense_is_moved_aside_and_rerun(case, sweep, caplog):
    out, configs, pristine = sweep
    for name, text in pristine.items():  # start each case from the real records
        (out / name).write_text(text)
    change, words = CASES[case]
    path = out / f"{configs[1].key()}.json"
    bad = _edit(json.loads(pristine[path.name]), change)
    assert any(words in p for p in sense_problems(bad)), sense_problems(bad)
    path.write_text(json.dumps(bad))

    with caplog.at_level("WARNING", logger="dnn_spring"):
        table = collect(out)
    assert list(table["key"]) == [configs[0].key()]
    assert any(str(path) in r.getMessage() and words in r.getMessage() for r in caplog.records)

    summary = run_sweep(configs, out, executor="debug", progress=False)
    assert summary["ok"] == 1 and summary["skipped"] == 1  # the bad one was trained again
    moved = [json.loads(p.read_text()) for p in (out / ".bad").glob(f"{path.stem}*.json")]
    assert bad in moved
    again, before = json.loads(path.read_text()), json.loads(pristine[path.name])
    for name in ("test_acc", "train_loss", "log_d", "trajectory"):  # the same numbers
        assert again[name] == before[name], name
    assert len(collect(out)) == 2
