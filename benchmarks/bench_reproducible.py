"""The reproducible mode's cost against the native mode, on this machine, in one run.

Two measurements, both ratios against a baseline timed in the same run:

* **evaluation** (one process): the record's evaluation of a trained model
  (accuracies and load curve), native float32 (``accuracy`` + ``load_curve``)
  against the mode's fixed-order float64 (:func:`dnn_spring.train._fixed_order.evaluate`),
  fastest of ``--repeats``;
* **whole runs** (separate processes, native and mode interleaved, ``--pairs``
  pairs): a quick-preset row (``--group`` members of the paper's MLP on
  mnist5k, full batch, noise 0 to 0.6), a batch-10 run and a small CNN, in
  seconds per run: training only (``GroupLoop.fit``) and ``train_group``
  (training and evaluation).  The mode's process has
  ``DNN_SPRING_REPRODUCIBLE=1`` from its start, as a sweep's workers and
  Slurm tasks do.

Usage::

    python benchmarks/bench_reproducible.py [--threads 1] [--epochs 10] [--group 4]
                                            [--pairs 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

_CHILD = """
import json, sys, time
import dnn_spring
import torch
from dnn_spring.train._group import GroupLoop, train_group
from dnn_spring import RunConfig
from dnn_spring import load_dataset
torch.set_num_threads(int(sys.argv[1]))
out = {}
for name, flats in json.loads(sys.argv[2]).items():
    configs = [RunConfig.from_flat(f) for f in flats]
    data = load_dataset(configs[0].data, flatten=configs[0].model.arch == "mlp")
    fit = GroupLoop(configs, data, torch.device("cpu"))
    start = time.perf_counter()
    fit.fit()
    training = (time.perf_counter() - start) / len(configs)
    start = time.perf_counter()
    records = train_group(configs)
    out[name] = [training, (time.perf_counter() - start) / len(configs)]
    assert all(r["status"] == "ok" for r in records), [r["error"] for r in records]
    assert all(r["reproducible"] == dnn_spring.train._reproducible.enabled() for r in records)
print(json.dumps(out))
"""


def _configs(epochs: int, group: int) -> dict:
    from dnn_spring import RunConfig

    paper = RunConfig().replace(dataset="mnist5k", depth=8, width=100, epochs=epochs, lr=1e-3)
    row = [paper.replace(noise=round(0.6 * i / max(group - 1, 1), 2), seed=i).flat()
           for i in range(group)]
    return {"full batch row": row,
            "batch 10": [paper.replace(batch_size=10, epochs=max(1, epochs // 10)).flat()],
            "cnn": [paper.replace(arch="cnn", depth=3, channels=8, batch_size=0,
                                  epochs=max(1, epochs // 2)).flat()]}


def _whole_runs(args) -> dict:
    configs = json.dumps(_configs(args.epochs, args.group))
    base = {k: v for k, v in os.environ.items() if k != "DNN_SPRING_REPRODUCIBLE"}
    times = {"native": [], "mode": []}
    for _ in range(args.pairs):
        for mode in ("native", "mode"):
            env = {**base, "DNN_SPRING_REPRODUCIBLE": "1"} if mode == "mode" else base
            done = subprocess.run([sys.executable, "-c", _CHILD, str(args.threads), configs],
                                  capture_output=True, text=True, env=env, timeout=900)
            if done.returncode:
                raise SystemExit(done.stderr[-3000:])
            times[mode].append(json.loads(done.stdout))
    return times


def _evaluation(args) -> dict:
    import torch

    from dnn_spring import load_curve
    from dnn_spring import RunConfig
    from dnn_spring import load_dataset
    from dnn_spring.train._fixed_order import evaluate
    from dnn_spring.train._record import accuracy
    from dnn_spring import train_run

    torch.set_num_threads(args.threads)
    out = {}
    for name, flats in _configs(2, 1).items():
        config = RunConfig.from_flat(flats[0]).replace(epochs=2, batch_size=0)
        _, model = train_run(config, return_model=True)
        data = load_dataset(config.data, flatten=config.model.arch == "mlp")

        def native():
            accuracy(model, data.x_train, data.y_train)
            accuracy(model, data.x_test, data.y_test)
            load_curve(model, data.x_train, labels=data.y_train, n_classes=data.n_classes,
                       warn=False, distributed=False)

        def fixed():
            evaluate(model, data)

        best = {}
        for label, fn in (("native", native), ("mode", fixed)):
            fn()  # warm-up
            runs = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                fn()
                runs.append(time.perf_counter() - start)
            best[label] = min(runs)
        out[name] = best
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"threads {args.threads}; the paper's MLP (depth 8, width 100) and a depth-3 "
          f"8-channel CNN on mnist5k (2,560 train, 10x10)")
    print("evaluation of one trained model (s, fastest of %d):" % args.repeats)
    for name, best in _evaluation(args).items():
        print(f"  {name:<15} native {best['native']:.3f}  mode {best['mode']:.3f}  "
              f"mode/native {best['mode'] / best['native']:.2f}")
    times = _whole_runs(args)
    print(f"whole runs (s per run; {args.pairs} interleaved pairs, {args.epochs} epochs at full "
          f"batch, {max(1, args.epochs // 10)} at batch 10, {max(1, args.epochs // 2)} for the CNN):")
    for name in times["native"][0]:
        for i, what in enumerate(("training only", "training + evaluation")):
            native = [t[name][i] for t in times["native"]]
            mode = [t[name][i] for t in times["mode"]]
            ratios = ", ".join(f"{m / n:.2f}" for n, m in zip(native, mode))
            print(f"  {name:<15} {what:<22} native {' '.join(f'{t:.3f}' for t in native)}  "
                  f"mode {' '.join(f'{t:.3f}' for t in mode)}  mode/native {ratios}")

if __name__ == "__main__":
    main()
