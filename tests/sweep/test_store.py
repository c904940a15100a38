"""The run-record schema, collect's skipping of bad files and the atomic table (dnn_spring.sweep._store)."""

import json
import math

import pandas as pd
import pytest

from dnn_spring.train._config import RunConfig
from dnn_spring.sweep._store import CorruptRecordError, collect, read_record, save_table, write_record
from dnn_spring.train._record import check_record, new_record


def good_record(**changes):
    """A full record as train_run writes it, with a 4-point load curve."""
    config = RunConfig().replace(depth=3, noise=0.2, slope=0.5)
    record = new_record(config, "cpu")
    record.update(test_acc=0.8, train_acc=0.9, train_loss=0.1, c=-0.2, v=0.1, regime="concave",
                  layers=["input", "blocks.0", "blocks.1", "head"], log_d=[2.0, 1.0, None, -1.0],
                  log_inv_d=[0.1, 0.2, 0.3, 0.4], log_trace_ratio=[1.0, 0.5, 0.0, -0.5],
                  log_d_pinv32=[2.0, 1.0, None, -1.5], rank_b=[3, 3, 3, 2], cond_b=[2.0, 5.0, 9.0, 1e6],
                  trajectory=[{"epoch": 0, "log_d": [2.0, 1.5, 1.0, 0.0]}], epochs_run=3)
    record.update(changes)
    return record


def test_a_full_record_passes_and_roundtrips(tmp_path):
    record = good_record()
    assert check_record(record) == []
    assert read_record(write_record(record, tmp_path)) == record
    assert check_record({k: v for k, v in record.items() if k not in ("c", "trajectory")}) == []


@pytest.mark.parametrize("change, message", [
    ({"log_d": "garbage"}, "`log_d` must be a list of numbers or null, got 'garbage'"),
    ({"log_d": [1.0, "x", 0.0, 0.0]}, "`log_d` must be a list of numbers or null"),
    ({"layers": [1, 2, 3, 4]}, "`layers` must be a list of strings"),
    ({"log_inv_d": [0.1, 0.2]}, "the load-curve lists must have one length, got layers 4, "
                                "log_d 4, log_inv_d 2, log_trace_ratio 4"),
    ({"test_acc": "high"}, "`test_acc` must be a number or null, got 'high'"),
    ({"train_loss": True}, "`train_loss` must be a number or null, got True"),
    ({"noise": None}, "`noise` must be a finite number, got None"),
    ({"lr": math.inf}, "`lr` must be a finite number, got inf"),
    ({"batch_size": 2.5}, "`batch_size` must be an integer, got 2.5"),
    ({"seed": "1"}, "`seed` must be an integer, got '1'"),
    ({"batchnorm": 1}, "`batchnorm` must be true or false, got 1"),
    ({"dataset": 3}, "`dataset` must be a string, got 3"),
    ({"status": "done"}, "`status` must be one of .*, got 'done'"),
    ({"regime": 5}, "`regime` must be a string or null, got 5"),
    ({"epochs_run": 1.5}, "`epochs_run` must be an integer or null, got 1.5"),
    ({"trajectory": [{"epoch": "0", "log_d": []}]}, r"`trajectory\[0\]` must be \{\"epoch\": int"),
    ({"trajectory": {"epoch": 0}}, "`trajectory` must be a list"),
])
def test_schema_violations_are_corrupt_with_the_reason(tmp_path, change, message):
    record = good_record(**change)
    path = tmp_path / f"{record['key']}.json"
    path.write_text(json.dumps(record))  # json writes inf as Infinity, read back as inf
    with pytest.raises(CorruptRecordError, match=message):
        read_record(path)


def test_missing_config_field_and_problem_count():
    record = good_record(test_acc="high", c="x", v="y", regime=1)
    del record["slope"]
    problems = check_record(record)
    assert "config field `slope` is missing" in problems and len(problems) == 5


def test_collect_skips_each_bad_file_with_one_line(tmp_path, caplog):
    good = good_record()
    write_record(good, tmp_path)
    bad = {"list": good_record(seed=1, log_d="garbage"), "acc": good_record(seed=2, test_acc="high"),
           "noise": good_record(seed=3, noise=None)}
    paths = {}
    for name, record in bad.items():
        record["key"] = f"bad-{name}"
        paths[name] = tmp_path / f"{record['key']}.json"
        paths[name].write_text(json.dumps(record))
    (tmp_path / "zzz.json").mkdir()  # not even a file
    with caplog.at_level("WARNING", logger="dnn_spring.sweep._store"):
        table = collect(tmp_path)
    assert list(table["key"]) == [good["key"]]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and all("\n" not in line for line in lines)
    for name, reason in [("list", "`log_d` must be a list"), ("acc", "`test_acc` must be a number"),
                         ("noise", "`noise` must be a finite number, got None")]:
        assert sum(line.startswith(f"skipping corrupt record {paths[name]}: ") and reason in line
                   for line in lines) == 1
    assert any(str(tmp_path / "zzz.json") in line and "IsADirectoryError" in line for line in lines)


def test_save_table_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    table = pd.DataFrame({"key": ["a", "b"], "log_d": [[1.0, 0.0], [2.0, 1.0]]})
    path = save_table(table, tmp_path / "t.csv")
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("dnn_spring.sweep._store.os.replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        save_table(table.iloc[:1], path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temporary file left
