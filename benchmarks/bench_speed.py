"""Seconds per training epoch of one run: a plain PyTorch loop, ``train_run`` and groups.

The paper's MLP (depth 8, width 100, BatchNorm, LeakyReLU, Adam) on ``--n-train``
mnist5k images (default 1,280), once at batch size 10 and once full batch.  For each
it times, in this one process and at this thread count:

* **plain loop**: an ``nn.Sequential`` of the same layers, ``torch.optim.Adam(fused=True)``,
  a ``randperm`` shuffle per epoch, nothing else (what a researcher writes in ten lines);
* **train_run**: one run of the package (records, stopping rule, evaluation), by the
  plain kernels of a lone MLP (``dnn_spring.train._lone_mlp``);
* **group of N** (``train_group``, N in ``--groups``): N runs of N seeds at once, per run;
  a group of 1 is ``train_run(config, grouped=True)``, a sweep's lone run.

Each is timed at ``--epochs`` and at ``--epochs`` minus ``--less`` epochs (no early stop)
(both times ``--full-scale`` at full batch, whose epoch is one step) and the
difference divided by the epochs between them, so set-up and the final evaluation cancel and
what is left is the training epoch (after one warm-up call).  Every figure is the median of ``--repeat`` timings.
The table gives seconds per epoch per run and the ratio to the plain loop (> 1: faster
than the plain loop).

Usage::

    python benchmarks/bench_speed.py [--threads 1] [--groups 1 8 30 60] [--device cpu]
                                     [--cuda-graphs]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _device import device_from  # benchmarks/_device.py

from dnn_spring import RunConfig, load_dataset, train_group, train_run


def _config(batch_size: int, epochs: int, n_train: int) -> RunConfig:
    return RunConfig().replace(dataset="mnist5k", n_train=n_train, batch_size=batch_size,
                               epochs=epochs, slope=0.01, stop_loss=0.0, stop_delta=0.0)


def plain_loop(config: RunConfig, data, device) -> None:
    """The baseline: the same network and optimiser, written the plain way."""
    torch.manual_seed(config.seed)
    width, depth, n_in = config.model.width, config.model.depth, data.x_train.shape[1]
    layers, size = [torch.nn.BatchNorm1d(n_in)], n_in
    for _ in range(depth - 1):
        layers += [torch.nn.Linear(size, width), torch.nn.BatchNorm1d(width),
                   torch.nn.LeakyReLU(config.model.slope)]
        size = width
    model = torch.nn.Sequential(*layers, torch.nn.Linear(size, data.n_classes)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.train.lr, fused=True)
    x, y = data.x_train, data.y_train
    step = config.train.batch_size or len(y)
    for _ in range(config.train.epochs):
        order = torch.randperm(len(y), device=device)
        for s in range(0, len(y), step):
            batch = order[s:s + step]
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def per_epoch(make, epochs: int, less: int, repeat: int) -> float:
    """Median seconds of one training epoch of ``make(epochs)`` (a callable per epoch count)."""
    make(1)()  # warm-up: first-call costs (allocator, kernel selection) are not an epoch's
    samples = []
    for _ in range(repeat):
        long, short = _seconds(make(epochs)), _seconds(make(epochs - less))
        samples.append((long - short) / less)
    return statistics.median(samples)


def bench(batch_size: int, args, data, device) -> list:
    """Rows ``(name, seconds per epoch per run)`` at one batch size."""
    scale = args.full_scale if batch_size == 0 else 1  # a full-batch epoch is one step: take more
    epochs, less = args.epochs * scale, args.less * scale
    cfg = lambda epochs, seed=0: _config(batch_size, epochs, args.n_train).replace(seed=seed)  # noqa: E731
    rows = [("plain loop", per_epoch(lambda e: lambda: plain_loop(cfg(e), data, device),
                                     epochs, less, args.repeat)),
            ("train_run", per_epoch(lambda e: lambda: train_run(cfg(e), device=device),
                                    epochs, less, args.repeat))]
    for n in args.groups:
        group = lambda e, n=n: lambda: train_group([cfg(e, s) for s in range(n)], device=device)  # noqa: E731
        rows.append((f"group of {n}", per_epoch(group, epochs, less, args.repeat) / n))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--groups", type=int, nargs="*", default=[1, 8, 30, 60],
                        help="group sizes (default 1 8 30 60; none: no groups)")
    parser.add_argument("--n-train", type=int, default=1280, help="training images (default 1280)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the long runs (default 6)")
    parser.add_argument("--less", type=int, default=4,
                        help="epochs fewer in the short runs (default 4)")
    parser.add_argument("--full-scale", type=int, default=5,
                        help="full batch: epochs and --less times this (default 5)")
    parser.add_argument("--repeat", type=int, default=3, help="timings per figure (median)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[10, 0],
                        help="batch sizes, 0 for full batch (default 10 0)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="groups step from CUDA graphs (CUDA only)")
    args = parser.parse_args(argv)
    if not 1 <= args.less < args.epochs:
        parser.error("`--less` must be >= 1 and below `--epochs`")
    device = device_from(parser, args)
    torch.set_num_threads(args.threads)
    data = load_dataset(_config(10, 1, args.n_train).data, device=device, flatten=True)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{len(data.y_train)} mnist5k images, MLP depth 8 width 100, Adam"
          f"{', CUDA graphs' if args.cuda_graphs else ''}")
    print("seconds per training epoch per run; x: how many times faster than the plain loop")
    for batch_size in args.batch_sizes:
        rows = bench(batch_size, args, data, device)
        plain = rows[0][1]
        print(f"\nbatch size {batch_size or 'full'}")
        for name, seconds in rows:
            print(f"  {name:<12} {1e3 * seconds:9.2f} ms   {plain / seconds:6.2f}x")


if __name__ == "__main__":
    main()
