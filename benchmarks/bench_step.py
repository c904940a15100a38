"""Where one training step's time goes: a plain loop's step, the lone run's and a group's.

The paper's MLP (depth 8, width 100, BatchNorm, Adam) on ``--n-train`` mnist5k images,
one fixed batch, at this thread count.  For the plain ``nn.Sequential`` step (fused
Adam), the lone model of ``train_run`` (``dnn_spring.train._lone_mlp.LoneMLP``) and
groups of ``--groups`` members (``GroupMLP``; 1 is ``train_run(grouped=True)``) it
prints the milliseconds of each section of a step (forward, backward, the copy of the
gradients into the flat buffer, the optimiser) and of the whole step per member, and
the ratio to the plain step (> 1: faster).  Then the rate (GFLOP/s) of the batched
products a group of the largest size runs for the two weight-gradient shapes, and the
multiply-adds of one member-step: what bounds a group from below.

Usage::

    python benchmarks/bench_step.py [--threads 1] [--batch-sizes 10 0] [--groups 1 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dnn_spring import RunConfig, load_dataset
from dnn_spring.train._group import GroupLoop


def _config(batch_size: int, n_train: int, seed: int = 0) -> RunConfig:
    return RunConfig().replace(dataset="mnist5k", n_train=n_train, batch_size=batch_size,
                               epochs=1, slope=0.01, seed=seed)


def _clock(fn, steps: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def plain_step(x, y, n_classes: int, steps: int) -> float:
    """Seconds of one step of the plain loop (no data shuffling: a fixed batch)."""
    torch.manual_seed(0)
    layers, size = [torch.nn.BatchNorm1d(x.shape[1])], x.shape[1]
    for _ in range(7):
        layers += [torch.nn.Linear(size, 100), torch.nn.BatchNorm1d(100), torch.nn.LeakyReLU(0.01)]
        size = 100
    model = torch.nn.Sequential(*layers, torch.nn.Linear(size, n_classes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return _clock(step, steps)


def sections(fit, batch: int, steps: int) -> dict:
    """Seconds per step of each section of ``fit.model``'s step (medians over steps)."""
    model = fit.model
    xe, ye = fit.epoch_data()
    lone = getattr(model, "SAMPLES_FIRST", False)
    xb = xe[:, :batch] if lone else xe[:, :, :batch].contiguous()
    yb = ye[:, :batch]
    times = {"forward": [], "backward": [], "grad copy": [], "optimiser": []}
    leaves = model._leaves if lone else [model.params[k] for k in model.param_names]
    targets = model._grad_leaves if lone else [model.grad_views[k] for k in model.param_names]
    for i in range(steps + 2):
        t0 = time.perf_counter()
        if lone:
            loss = torch.nn.functional.cross_entropy(model.logits(xb[0]), yb[0])
            ones = None
        else:
            loss = model.losses(xb, yb)
            ones = torch.full_like(loss, 1.0 / batch)
        t1 = time.perf_counter()
        grads = torch.autograd.grad(loss, leaves, grad_outputs=ones)
        t2 = time.perf_counter()
        torch._foreach_copy_(targets, list(grads))
        t3 = time.perf_counter()
        model.opt.step([model.grad_flat])
        t4 = time.perf_counter()
        if i >= 2:  # after two warm-up steps
            for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[key].append(dt)
    return {k: statistics.median(v) for k, v in times.items()}


def product_rate(n: int, batch: int, n_in: int, steps: int) -> float:
    """GFLOP/s of the weight-gradient product of n members, (100 x B) @ (B x n_in)."""
    g = torch.randn(n, batch, 100).transpose(1, 2)
    x = torch.randn(n, n_in, batch).transpose(1, 2)
    seconds = _clock(lambda: torch.bmm(g, x), steps)
    return 2 * n * 100 * batch * n_in / seconds / 1e9


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[10, 0],
                        help="batch sizes, 0 for full batch (default 10 0)")
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 30],
                        help="group sizes (default 1 30)")
    parser.add_argument("--n-train", type=int, default=1280, help="training images (default 1280)")
    parser.add_argument("--steps", type=int, default=40,
                        help="timed steps at batch 10; full batch takes a tenth (default 40)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    data = load_dataset(_config(10, args.n_train).data, device=device, flatten=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.n_train} mnist5k "
          "images, MLP depth 8 width 100, Adam; ms per step")
    for batch_size in args.batch_sizes:
        batch = batch_size or args.n_train
        steps = args.steps if batch_size else max(2, args.steps // 10)
        plain = plain_step(data.x_train[:batch], data.y_train[:batch], data.n_classes, steps)
        print(f"\nbatch {batch_size or 'full'}: plain loop step {1e3 * plain:.3f}")
        runs = [("lone (train_run)", [_config(batch_size, args.n_train)], True)]
        runs += [(f"group of {n}", [_config(batch_size, args.n_train, s) for s in range(n)], False)
                 for n in args.groups]
        for name, configs, lone in runs:
            fit = GroupLoop(configs, data, device, lone=lone)
            parts = sections(fit, batch, steps)
            total, n = sum(parts.values()), len(configs)
            shown = "  ".join(f"{k} {1e3 * v:.3f}" for k, v in parts.items())
            print(f"  {name:<17} {shown}  | per member {1e3 * total / n:.3f}  "
                  f"{plain / (total / n):5.2f}x")
    n = max(args.groups)
    print(f"\nbatched weight-gradient products, {n} members, batch 10: "
          f"(100 x 10) @ (10 x 784) {product_rate(n, 10, 784, args.steps):.0f} GFLOP/s, "
          f"(100 x 10) @ (10 x 100) {product_rate(n, 10, 100, args.steps):.0f} GFLOP/s")
    forward = 784 * 100 + 6 * 100 * 100 + 100 * data.n_classes
    backward = forward + 6 * 100 * 100 + 100 * data.n_classes  # weights, and inputs but the first
    print(f"multiply-adds per sample of one member-step: {forward + backward:,}")


if __name__ == "__main__":
    main()
