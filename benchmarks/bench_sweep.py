"""Batched vs one-at-a-time training of one row of the phase diagram.

Grid: 6 slopes x 10 seeds at one noise level on the paper's shapes (2560
samples x 100 features x 10 classes, the synthetic ``gaussian`` set; MLP depth
8, width 100, Adam), once full batch and once at batch size 10.  For each
setting it times

* batched: the 60 configs through ``dnn_spring.train._group.train_group`` in
  groups of ``max_group_size`` (as the sweep runner sends them);
* one at a time: ``--single-runs`` of them through ``train_run`` (each a
  separate model), extrapolated per run;

both end to end (training plus the per-run evaluation: accuracies and load
curve) and training only.  For context it also times, training only, the
loop a plain PyTorch script would run (``nn.Module``, ``torch.optim.Adam``,
a shuffling ``DataLoader``); the targets are judged against ``train_run``,
the stricter baseline.  It also counts the trainer's matrix-multiply
FLOPs (forward + both backward products of every Linear) and divides the
achieved rate by this machine's ``torch.bmm`` throughput on exactly those
shapes, measured in the same process.

Usage::

    python benchmarks/bench_sweep.py [--epochs 5] [--device cpu] [--single-runs 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from _device import device_from  # benchmarks/_device.py

from dnn_spring.train._group import GroupLoop, train_group
from dnn_spring.train._grouping import max_group_size
from dnn_spring import RunConfig
from dnn_spring import load_dataset
from dnn_spring import train_run

SLOPES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
SEEDS = range(10)


def _grid(batch_size: int, epochs: int, noise: float) -> list:
    base = RunConfig().replace(dataset="gaussian", batch_size=batch_size, epochs=epochs,
                               noise=noise, stop_loss=0.0, stop_delta=0.0)
    return [base.replace(slope=a, seed=s) for a in SLOPES for s in SEEDS]


def _layer_shapes(config, n_in: int, n_out: int) -> list:
    w = config.model.width
    return [(n_in, w)] + [(w, w)] * (config.model.depth - 2) + [(w, n_out)]


def _step_batches(n: int, batch_size: int) -> list:
    step = n if batch_size == 0 or batch_size >= n else batch_size
    return [min(step, n - s) for s in range(0, n, step)]


def _matmul_flops(config, n_in, n_out, n, members) -> float:
    """Forward x@W, backward g@W^T and x^T@g of every Linear, per epoch."""
    per_sample = sum(2 * a * b for a, b in _layer_shapes(config, n_in, n_out))
    return 3.0 * per_sample * n * members


def _bmm_rate(config, n_in, n_out, batch, members, device, seconds=2.0) -> float:
    """GFLOP/s of plain torch.bmm on the trainer's shapes (fwd + 2 bwd per layer)."""
    ops = []
    for a, b in _layer_shapes(config, n_in, n_out):
        x, w, g = (torch.randn(members, batch, a, device=device),
                   torch.randn(members, a, b, device=device),
                   torch.randn(members, batch, b, device=device))
        ops += [(x, w), (g, w.transpose(1, 2)), (x.transpose(1, 2), g)]
    flops = sum(2 * u.shape[0] * u.shape[1] * u.shape[2] * v.shape[2] for u, v in ops)

    def once():
        for u, v in ops:
            torch.bmm(u, v)
        if device.type == "cuda":
            torch.cuda.synchronize()

    once()
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        once()
        reps += 1
    return flops * reps / (time.perf_counter() - start) / 1e9


def _plain_torch_run(config, data, device) -> None:
    """Training as a plain PyTorch script would do it (the context line of the report).

    ``nn.Module`` MLP, ``torch.optim.Adam``, a shuffling ``DataLoader`` over a
    ``TensorDataset`` (per-sample indexing, then collation) and the same
    data/label noise per batch.  No early stopping; no evaluation.
    """
    from torch.utils.data import DataLoader, TensorDataset

    from dnn_spring.train import MLP

    gen = torch.Generator().manual_seed(config.seed)
    model = MLP(config.model, data.x_train.shape[1], data.n_classes, generator=gen).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    bs = config.train.batch_size or data.n_train
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=bs, shuffle=True,
                        generator=gen)
    x_std = float(data.x_train.std())
    model.train()
    for _ in range(config.train.epochs):
        for xb, yb in loader:
            p = config.train.noise
            if p:  # the same noise rule, drawn the plain way
                reset = torch.rand(yb.shape, generator=gen) < p
                yb = torch.where(reset, torch.randint(data.n_classes, yb.shape, generator=gen), yb)
                xb = xb + (p * x_std) * torch.randn(xb.shape, generator=gen)
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _bench(name, configs, device, data, single_runs, group_size):
    n, n_in, n_out = data.n_train, data.x_train.shape[1], data.n_classes
    epochs, bs = configs[0].train.epochs, configs[0].train.batch_size
    print(f"\n== {name}: {len(configs)} runs (6 slopes x 10 seeds), noise "
          f"{configs[0].train.noise}, batch size {bs or n}, {epochs} epochs, "
          f"{len(_step_batches(n, bs))} steps/epoch")
    size = group_size or max_group_size(configs[0], device=device)
    groups = [configs[i:i + size] for i in range(0, len(configs), size)]
    print(f"batched in {len(groups)} group(s) of up to {size} members")
    t_batch = _time(lambda: [train_group(g, device=device) for g in groups])
    t_single = _time(lambda: [train_run(c, device=device) for c in configs[:single_runs]])
    t_batch_train = _time(lambda: [GroupLoop(g, data, device).fit() for g in groups])
    t_single_train = _time(lambda: [GroupLoop([c], data, device).fit()
                                    for c in configs[:single_runs]])
    t_plain = _time(lambda: [_plain_torch_run(c, data, device) for c in configs[:single_runs]])
    per_b, per_s = t_batch / len(configs), t_single / single_runs
    per_bt, per_st = t_batch_train / len(configs), t_single_train / single_runs
    per_p = t_plain / single_runs
    print(f"end to end (train + eval)  batched {per_b:8.3f} s/run   one at a time "
          f"{per_s:8.3f} s/run (timed {single_runs}, extrapolated)   ratio {per_s / per_b:6.1f}x")
    print(f"training only              batched {per_bt:8.3f} s/run   one at a time "
          f"{per_st:8.3f} s/run   ratio {per_st / per_bt:6.1f}x")
    print(f"context: plain PyTorch loop (nn.Module, torch.optim.Adam, DataLoader), training only "
          f"{per_p:8.3f} s/run   batched is {per_p / per_bt:6.1f}x faster")
    flops = _matmul_flops(configs[0], n_in, n_out, n, len(configs)) * epochs
    achieved = flops / t_batch_train / 1e9
    batch = _step_batches(n, bs)[0]
    rate = _bmm_rate(configs[0], n_in, n_out, batch, len(groups[0]), device)
    print(f"matmul throughput          batched trainer {achieved:7.1f} GFLOP/s   torch.bmm at "
          f"the same shapes {rate:7.1f} GFLOP/s   efficiency {100 * achieved / rate:5.1f}%")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs of every run")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--noise", type=float, default=0.2, help="the row's data/label noise")
    parser.add_argument("--single-runs", type=int, default=3,
                        help="how many one-at-a-time runs to time (extrapolated per run)")
    parser.add_argument("--group-size", type=int, default=0,
                        help="members per batched group (0: dnn_spring.train._grouping.max_group_size)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="batched steps from CUDA graphs (dnn_spring.train._cuda_graphs; CUDA only)")
    parser.add_argument("--only", choices=("full", "small"), default=None,
                        help="run only the full-batch or only the batch-10 grid")
    args = parser.parse_args(argv)
    device = device_from(parser, args)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    data = load_dataset(_grid(0, 1, 0.0)[0].data, device=device, flatten=True)
    if args.only in (None, "full"):
        _bench("full batch", _grid(0, args.epochs, args.noise), device, data, args.single_runs,
               args.group_size)
    if args.only in (None, "small"):
        _bench("batch size 10", _grid(10, args.epochs, args.noise), device, data,
               args.single_runs, args.group_size)


if __name__ == "__main__":
    main()
