"""Write tests/data/pinned_records.json again from its own configs, in the reproducible mode.

Run only when a version deliberately changes the numbers (and say so in the
changelog); the pinned file then holds that version's records::

    OMP_NUM_THREADS=1 python tests/data/pin_records.py

The records are trained in the reproducible mode (``DNN_SPRING_REPRODUCIBLE=1``,
set here before torch loads: :mod:`dnn_spring.train._reproducible`) with one torch
thread, so any x86 CPU with AVX2 writes the same file with the same torch
build.  The configs are kept; every record is trained again.  With
``--out FILE`` the records go to FILE instead (``tests/train/test_pinned_records.py``
compares them with the pinned ones).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

os.environ["DNN_SPRING_REPRODUCIBLE"] = "1"  # before torch: dnn_spring applies the mode's settings

import dnn_spring  # noqa: E402,F401  (first, before torch)
import torch  # noqa: E402

from dnn_spring.train._group import train_group  # noqa: E402
from dnn_spring.train._config import RunConfig  # noqa: E402
from dnn_spring.train._run import train_run  # noqa: E402

PATH = Path(__file__).with_name("pinned_records.json")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the records here instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pinned = json.loads(PATH.read_text())
    for entry in pinned["singles"].values():
        entry["record"] = train_run(RunConfig.from_flat(entry["config"]))
    group = [RunConfig.from_flat(c) for c in pinned["in_group"]["configs"]]
    pinned["in_group"]["record"] = train_group(group)[1]
    mixed = [RunConfig.from_flat(m["config"]) for m in pinned["mixed_group"]]
    for entry, record in zip(pinned["mixed_group"], train_group(mixed)):
        entry["record"] = record
    pinned["machine"] = {"cpu_model": cpu_model(), "mode": "reproducible"}
    (args.out or PATH).write_text(json.dumps(pinned, indent=1) + "\n")
    ends = [m["record"]["stop_reason"] for m in pinned["mixed_group"]]
    print(f"wrote {args.out or PATH}; the mixed group ends by {ends}")


if __name__ == "__main__":
    main()
