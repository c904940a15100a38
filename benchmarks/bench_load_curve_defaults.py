"""Cost of the default ``load_curve`` on a ResNet-18 against ``inverse=False`` and ``inverse=True``.

    python benchmarks/bench_load_curve_defaults.py [--repeats 3] [--threads 1]

A torchvision ``resnet18(num_classes=10)`` (random weights, seeded) measured on 64
seeded images of 3×32×32 at its default points (input, stem, 8 blocks, fc), the three
calls interleaved ``--repeats`` times; prints the median seconds of each and the ratios
to ``inverse=False`` (the issue's target: the default at most 3×).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import torchvision

from dnn_spring import load_curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 3, 32, 32, generator=g), torch.arange(64) % 10
    calls = {"default": {}, "inverse=False": {"inverse": False}, "inverse=True": {"inverse": True}}
    times = {name: [] for name in calls}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 64 samples: every wide point is under-sampled
        load_curve(model, x, y)  # warm-up
        for _ in range(args.repeats):
            for name, options in calls.items():
                start = time.perf_counter()
                load_curve(model, x, y, **options)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["inverse=False"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:14s} {median:7.3f} s  {median / base:6.2f}x inverse=False")


if __name__ == "__main__":
    main()
