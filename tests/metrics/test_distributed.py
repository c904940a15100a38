"""Statistics summed across torch.distributed ranks: 2 processes under torchrun (gloo, CPU).

Each rank measures its shard (rank r takes every other sample or batch);
every rank's curve must equal the single-process curve over the whole data.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dist_worker
from dnn_spring.metrics._fuzziness import FuzzinessAccumulator
from dnn_spring import load_curve
from dnn_spring.metrics._distributed import use_distributed

WORKER = Path(dist_worker.__file__)


def _close(a, b, rel):
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= rel * max(abs(a), abs(b))


@pytest.mark.slow
def test_every_rank_gets_the_single_process_curve(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", str(WORKER), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    single = dist_worker.measure_all()
    worst = 0.0
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert set(got) == set(single)
        for case, columns in single.items():
            for column, expected in columns.items():
                if case == "tracker_same_probe" and column == "n_samples":
                    continue  # counted once per rank, checked below
                for a, b in zip(got[case][column], expected, strict=True):
                    assert _close(a, b, 1e-10), (rank, case, column, a, b)
                    if column == "log_d":
                        worst = max(worst, abs(a - b) / abs(b))
    # the shards really differ: rank 1 alone never sees class 3
    assert single["label"]["n_samples"][0] == 240 and single["tracker_same_probe"]["n_samples"][0] == 240
    assert got["tracker_same_probe"]["n_samples"][0] == 480  # the same probe counted on both ranks
    print(f"largest relative log D difference over ranks and cases: {worst:.2e}")


def test_without_a_process_group_nothing_is_summed():
    assert use_distributed(None) is False and use_distributed(False) is False
    with pytest.raises(ValueError, match="`distributed=True` needs an initialised process group"):
        FuzzinessAccumulator(distributed=True)
    with pytest.raises(ValueError, match="`distributed=True` needs an initialised process group"):
        load_curve(torch.nn.Sequential(torch.nn.Linear(3, 3)), torch.randn(6, 3), torch.arange(6) % 2,
                   distributed=True)
    with pytest.raises(TypeError, match="`distributed` must be None, True or False"):
        use_distributed("yes")
