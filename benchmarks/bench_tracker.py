"""Overhead of LoadCurveTracker at its defaults (probe 512, every epoch), same run.

    python benchmarks/bench_tracker.py [--epochs 3] [--pairs 2] [--threads 1] [--device cpu]

Two plain PyTorch training loops on the embedded MNIST (mnist5k, 2,560
training images), each timed without and with ``tracker.epoch_end()`` after
every epoch, interleaved (plain, tracked, plain, tracked, ...):

- the paper's MLP (depth 8, width 100, 10×10 inputs), Adam 1e-3, batch 128;
- a torchvision ResNet-18 (10 classes) on the images upsampled to 3×32×32,
  SGD 0.05, batch 64, the first 1,024 training images per epoch.

Prints seconds per epoch for each and the overhead ``tracked / plain − 1``.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from dnn_spring import LoadCurveTracker, load_dataset
from dnn_spring import DataConfig, ModelConfig
from dnn_spring.train import MLP


def _epoch(model, opt, x, y, batch, gen):
    model.train()
    order = torch.randperm(len(x), generator=gen)
    for i in range(0, len(x), batch):
        idx = order[i:i + batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def _run(make, x, y, batch, epochs, tracked, device):
    torch.manual_seed(0)
    model, opt = make()
    model.to(device)
    tracker = LoadCurveTracker(model, x, y) if tracked else None
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(epochs):
        _epoch(model, opt, x, y, batch, gen)
        if tracker is not None:
            tracker.epoch_end()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / epochs


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import torchvision

    data = load_dataset(DataConfig(dataset="mnist5k"), device=args.device, flatten=False)
    x_mlp, y = data.x_train.reshape(len(data.x_train), -1), data.y_train
    x_img = F.interpolate(data.x_train[:1024], size=32, mode="bilinear").repeat(1, 3, 1, 1)
    y_img = y[:1024]

    def mlp():
        net = MLP(ModelConfig(depth=8, width=100, slope=0.0), 100, 10)
        return net, torch.optim.Adam(net.parameters(), lr=1e-3)

    def resnet():
        net = torchvision.models.resnet18(num_classes=10)
        return net, torch.optim.SGD(net.parameters(), lr=0.05)

    for name, make, x, yy, batch in (("paper MLP", mlp, x_mlp, y, 128),
                                     ("ResNet-18 32x32", resnet, x_img, y_img, 64)):
        plain, tracked = [], []
        for _ in range(args.pairs):
            plain.append(_run(make, x, yy, batch, args.epochs, False, args.device))
            tracked.append(_run(make, x, yy, batch, args.epochs, True, args.device))
        ratios = [t / b - 1 for b, t in zip(plain, tracked)]
        print(f"{name}: plain {', '.join(f'{v:.3f}' for v in plain)} s/epoch; tracked "
              f"{', '.join(f'{v:.3f}' for v in tracked)} s/epoch; overhead "
              f"{', '.join(f'{100 * r:+.1f} %' for r in ratios)}")


if __name__ == "__main__":
    main()
