"""Write tests/data/pinned_records.json again from its own configs, with this version's code.

Run only when a version deliberately changes the numbers (and say so in the
changelog); the pinned file then holds that version's records::

    OMP_NUM_THREADS=1 python tests/data/pin_records.py

One torch thread, as the test compares.  The configs (and the CPU model
name) are kept; every record is trained again.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dnn_spring.batched import train_group
from dnn_spring.config import RunConfig
from dnn_spring.train import train_run

PATH = Path(__file__).with_name("pinned_records.json")


def main() -> None:
    torch.set_num_threads(1)
    pinned = json.loads(PATH.read_text())
    for entry in pinned["singles"].values():
        entry["record"] = train_run(RunConfig.from_flat(entry["config"]))
    group = [RunConfig.from_flat(c) for c in pinned["in_group"]["configs"]]
    pinned["in_group"]["record"] = train_group(group)[1]
    mixed = [RunConfig.from_flat(m["config"]) for m in pinned["mixed_group"]]
    for entry, record in zip(pinned["mixed_group"], train_group(mixed)):
        entry["record"] = record
    PATH.write_text(json.dumps(pinned, indent=1) + "\n")
    ends = [m["record"]["stop_reason"] for m in pinned["mixed_group"]]
    print(f"wrote {PATH}; the mixed group ends by {ends}")


if __name__ == "__main__":
    main()
