"""Operators per training step and host syncs per epoch of the batched MLP, by group size.

On a GPU a small step is bound by kernel launches, so a batched group only
pays off if its step launches the same operators whatever the number of
members.  This benchmark counts, with ``torch.profiler`` on the CPU:

* the ``aten::`` operators of one training step (forward, backward,
  optimiser; all of them, nested ones included, and the top-level ones);
* the host syncs of one whole epoch (``aten::_local_scalar_dense`` and
  ``aten::item``: a device tensor read by the host), and the operators of
  the per-epoch data pass (``GroupLoop.epoch_data``) and of the end-of-epoch
  read (``GroupLoop.read_epoch``).

Syncs inside ``aten::_fused_adam_`` are counted apart ("adam step reads"):
the fused Adam's CPU kernel reads its step count from a CPU scalar tensor
(``.item()`` on the CPU, no device involved); the CUDA kernel reads the same
tensor on the device.

for groups of 1, 8, 64 and 512 members of the paper's MLP (depth 8, width
100, Adam, 2,560 samples of 100 features, 10 classes: the synthetic
``gaussian`` set) at batch size 10 and full batch, with data/label noise
0.2 and dropout 0.1 on every member (every random stream in use) and
slopes spread over [0, 1].  The counts do not depend on the device; on a
GPU each operator is at least one kernel launch.

Usage::

    python benchmarks/bench_ops.py [--groups 1 8 64 512] [--batch-sizes 10 0]
                                   [--full-epoch-max 64]

``--full-epoch-max``: the largest group whose whole epoch is run for the sync
count at batch size 10 (an epoch of 256 steps of 512 members takes long on a
CPU); larger groups count the syncs of their data pass, one step and the
end-of-epoch read, which are an epoch's only parts.
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch
from torch.profiler import ProfilerActivity, profile

from dnn_spring.train._group import GroupLoop
from dnn_spring import RunConfig
from dnn_spring import load_dataset

SYNCS = ("aten::_local_scalar_dense", "aten::item")


def _configs(n: int, batch_size: int, n_train: int = 0) -> list:
    base = RunConfig().replace(dataset="gaussian", batch_size=batch_size, epochs=2, noise=0.2,
                               dropout=0.1, stop_loss=0.0, stop_delta=0.0, n_train=n_train)
    return [base.replace(seed=i, slope=(i % 6) / 5) for i in range(n)]


def _count(fn) -> Counter:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    counts = Counter()
    for e in prof.events():
        if e.name.startswith("aten::"):
            counts["ops"] += 1
            counts["top"] += e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")
            if e.name in SYNCS and not (e.cpu_parent is not None and e.cpu_parent.name in SYNCS):
                counts["adam" if _inside(e, "aten::_fused_adam_") else "syncs"] += 1
    return counts


def _inside(event, name: str) -> bool:
    while event is not None:
        if event.name == name:
            return True
        event = event.cpu_parent
    return False


def measure(n: int, batch_size: int, data, *, whole_epoch: bool) -> dict:
    """Operator and sync counts of one group of ``n`` members."""
    fit = GroupLoop(_configs(n, batch_size, data.n_train), data, torch.device("cpu"))
    fit.epoch = 1
    xe, ye = fit.epoch_data()
    step = xe.shape[2] if batch_size == 0 else batch_size
    xb, yb = xe[:, :, :step].contiguous(), ye[:, :step]
    fit.model.step(xb, yb)  # warm-up (first-call allocations)
    one_step = _count(lambda: fit.model.step(xb, yb))
    data_pass = _count(fit.epoch_data)
    means = torch.zeros(n)
    read = _count(lambda: fit.read_epoch(means))
    out = {"members": n, "batch": step, "ops/step": one_step["ops"],
           "top-level ops/step": one_step["top"], "syncs/step": one_step["syncs"],
           "adam step reads/step": one_step["adam"],
           "data-pass ops": data_pass["ops"], "read ops": read["ops"]}
    if whole_epoch:
        fit.epoch = 2
        epoch = _count(lambda: fit.read_epoch(fit.run_epoch()))
        out["syncs/epoch"] = epoch["syncs"]
        out["epoch measured"] = "whole"
    else:
        out["syncs/epoch"] = data_pass["syncs"] + one_step["syncs"] + read["syncs"]
        out["epoch measured"] = "parts"
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 8, 64, 512])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[10, 0],
                        help="0: full batch")
    parser.add_argument("--full-epoch-max", type=int, default=64)
    parser.add_argument("--full-batch-n", type=int, default=640,
                        help="training samples of the full-batch rows (512 members of 2,560 "
                        "samples need about 12 GB; the counts do not depend on it)")
    args = parser.parse_args(argv)
    datasets = {10: load_dataset(_configs(1, 10)[0].data, flatten=True),
                0: load_dataset(_configs(1, 0, args.full_batch_n)[0].data, flatten=True)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{datasets[10].n_train} samples x {datasets[10].x_train.shape[1]} features "
          f"(full batch: {datasets[0].n_train} samples)")
    cols = ("members", "batch", "ops/step", "top-level ops/step", "syncs/step",
            "adam step reads/step", "data-pass ops",
            "read ops", "syncs/epoch", "epoch measured")
    print(" | ".join(cols))
    for batch_size in args.batch_sizes:
        for n in args.groups:
            data = datasets[0] if batch_size == 0 else datasets.get(batch_size, datasets[10])
            row = measure(n, batch_size, data,
                          whole_epoch=batch_size == 0 or n <= args.full_epoch_max)
            print(" | ".join(str(row[c]) for c in cols), flush=True)


if __name__ == "__main__":
    main()
