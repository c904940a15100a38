"""The paper's CNN one at a time vs in batched groups, on this machine.

The CNN sweep (docs/science.md#sweeps) is 8 dropout values x 10 seeds x 2,000 epochs of the
depth-8, 20-channel CNN at full batch (2,560 images of 10x10).  This script
times, training only (the epoch loop of ``dnn_spring.train._group.GroupLoop``, after
one warm-up epoch):

* single: one config at a time (a group of one: plain convolutions);
* batched: a group of ``--group`` configs (the sweep's dropout values, one
  seed) as one ``GroupCNN`` (grouped convolutions);
* plain: for context, the loop a plain script would run (``models.CNN`` with
  ``nn.Dropout``, ``torch.optim.Adam``), one model;
* vmap: a batched training step of ``--vmap-batch`` images through
  ``torch.func.vmap`` over ``functional_call`` of ``models.CNN``
  (per-member gradients of stacked parameters; dropout 0, BatchNorm
  statistics batched), against the same step of ``GroupCNN``.

and prints seconds per run and epoch (the fastest of ``--epochs``: the
machine may be shared) and the ratios, so ``batched / single`` below 1 means
batching pays on this device.  It also counts, with
``torch.profiler``, the operators of one ``GroupCNN`` step for 1 and
``--group`` members.

Data: ``mnist5k`` (1x10x10, real, offline) and ``images3`` (3x10x10
Gaussian images, the shape of the paper's CIFAR-10 input; CIFAR-10 itself
cannot be downloaded here).

Usage::

    python benchmarks/bench_cnn.py [--epochs 2] [--group 8] [--threads 2]
                                   [--batch-sizes 0 64] [--data mnist5k images3]
                                   [--no-vmap] [--vmap-batch 256]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from dnn_spring.train._group import GroupLoop
from dnn_spring import RunConfig
from dnn_spring.train import Dataset, load_dataset
from dnn_spring.sweep import SWEEPS
from dnn_spring.train import CNN

DROPOUTS = SWEEPS["cnn"].values  # the paper's 8 dropout values


def _configs(n: int, dataset: str, batch_size: int) -> list:
    base = RunConfig().replace(arch="cnn", depth=8, channels=20, dataset="mnist5k",
                               lr=1e-4, batch_size=batch_size, stop_loss=0.0, stop_delta=0.0)
    return [base.replace(dropout=DROPOUTS[i % len(DROPOUTS)], seed=i // len(DROPOUTS))
            for i in range(n)]


def _data(name: str) -> Dataset:
    if name == "mnist5k":
        return load_dataset(_configs(1, name, 0)[0].data, flatten=False)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 3, 10, 10, generator=gen)
    y = torch.randint(0, 10, (3000,), generator=gen)
    return Dataset(x[:2560], y[:2560], x[2560:], y[2560:], 10, (3, 10, 10), name)


def _fastest(fn, times: int) -> float:
    """Seconds of the fastest of ``times`` calls of ``fn`` (the machine may be shared)."""
    best = float("inf")
    for _ in range(times):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def time_group(configs: list, data, epochs: int) -> float:
    """Seconds of the fastest of ``epochs`` epochs of a GroupLoop of ``configs`` (after a
    warm-up epoch)."""
    fit = GroupLoop(configs, data, torch.device("cpu"))

    def epoch():
        fit.epoch += 1
        fit.read_epoch(fit.run_epoch())

    epoch()
    return _fastest(epoch, epochs)


def time_plain(config, data, epochs: int) -> float:
    """Seconds of the fastest of ``epochs`` epochs of a plain full-batch nn.Module loop."""
    model = CNN(config.model, data.input_shape, data.n_classes, seed=0).train()
    opt = torch.optim.Adam(model.parameters(), lr=config.train.lr)

    def epoch():
        loss = F.cross_entropy(model(data.x_train), data.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    epoch()
    return _fastest(epoch, epochs)


def time_vmap(configs: list, data, batch: int, steps: int = 3) -> tuple:
    """Seconds of the fastest step of ``batch`` images: (GroupCNN, vmap).

    Dropout 0 in both; vmap's step is ``vmap(grad(loss))`` over the stacked
    parameters and BatchNorm statistics of ``models.CNN``, then Adam.
    """
    from torch.func import functional_call, grad, stack_module_state, vmap

    configs = [c.replace(dropout=0.0) for c in configs]
    fit = GroupLoop(configs, data, torch.device("cpu"))
    fit.epoch = 1
    xe, ye = fit.epoch_data()
    xb, yb = xe[:, :, :batch].contiguous(), ye[:, :batch]
    models = [CNN(c.model, data.input_shape, data.n_classes, seed=c.seed).train()
              for c in configs]
    params, buffers = stack_module_state(models)
    base = models[0].to("meta")
    opt = torch.optim.Adam(list(params.values()), lr=configs[0].train.lr)
    x = data.x_train[:batch].expand(len(configs), *data.x_train[:batch].shape)
    y = data.y_train[:batch].expand(len(configs), -1)

    def loss(p, b, xs, ys):
        return F.cross_entropy(functional_call(base, (p, b), (xs,)), ys)

    def vmap_step():
        grads = vmap(grad(loss), in_dims=(0, 0, 0, 0))(params, buffers, x, y)
        for k, g in grads.items():
            params[k].grad = g
        opt.step()

    out = []
    for step in (lambda: fit.model.step(xb, yb), vmap_step):
        step()
        out.append(_fastest(step, steps))
    return tuple(out)


def count_ops(configs: list, data) -> int:
    """aten operators of one GroupCNN step of 64 images (nested ones included)."""
    fit = GroupLoop(configs, data, torch.device("cpu"))
    fit.epoch = 1
    xe, ye = fit.epoch_data()
    xb, yb = xe[:, :, :64].contiguous(), ye[:, :64]  # the count does not depend on the batch
    fit.model.step(xb, yb)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fit.model.step(xb, yb)
    return Counter(e.name.startswith("aten::") for e in prof.events())[True]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2,
                        help="timed epochs per setting (the fastest counts)")
    parser.add_argument("--group", type=int, default=8, help="members of the batched group")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[0],
                        help="batch sizes to time (0: full batch, the paper's)")
    parser.add_argument("--data", nargs="+", default=["mnist5k", "images3"],
                        choices=["mnist5k", "images3"])
    parser.add_argument("--no-vmap", action="store_true", help="skip the vmap step")
    parser.add_argument("--vmap-batch", type=int, default=256,
                        help="images per step in the vmap comparison (full batch needs >16 GB)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{torch.backends.cpu.get_cpu_capability()}; CNN depth 8, 20 channels, full batch")
    for name in args.data:
        data = _data(name)
        for batch_size in args.batch_sizes:
            _compare(name, data, _configs(args.group, name, batch_size), args)


def _compare(name: str, data, configs: list, args) -> None:
    single = time_group(configs[:1], data, args.epochs)
    batched = time_group(configs, data, args.epochs) / len(configs)
    batch = configs[0].train.batch_size or "full"
    text = (f"{name} {tuple(data.x_train.shape)}, batch {batch}: s per run and epoch: "
            f"single {single:.3f}, batched ({len(configs)}) {batched:.3f}")
    if configs[0].train.batch_size == 0:
        plain = time_plain(configs[0], data, args.epochs)
        text += f", plain nn.Module {plain:.3f} (single/plain {single / plain:.2f})"
    print(f"{text}; batched/single {batched / single:.2f}", flush=True)
    if not args.no_vmap:
        stacked, vm = time_vmap(configs, data, args.vmap_batch)
        print(f"  one step of {args.vmap_batch} images, group of {len(configs)}, dropout 0: "
              f"GroupCNN {stacked:.3f} s, vmap {vm:.3f} s; vmap/GroupCNN {vm / stacked:.2f}",
              flush=True)
    ops = {n: count_ops(configs[-n:], data) for n in (1, 2, len(configs))}  # p > 0 first
    print("  aten ops per step: " + ", ".join(f"{n} members {k}" for n, k in ops.items()),
          flush=True)

if __name__ == "__main__":
    main()
