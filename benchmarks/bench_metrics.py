"""Low-rank separation fuzziness against the pseudo-inverse formula, same run.

    python benchmarks/bench_metrics.py [--n 10000] [--classes 10] [--widths 256 1024 4096]

The baseline is what the paper's code computes: SS_W and SS_B as p×p matrices
and ``Tr(SS_W · pinv(SS_B))``, here in float64 torch on the same device.
Prints seconds for each path, the ratio, and the relative difference of D.
"""

from __future__ import annotations

import argparse
import time

import torch

from dnn_spring import separation_fuzziness


def pinv_fuzziness(x: torch.Tensor, y: torch.Tensor) -> float:
    """``Tr(SS_W · pinv(SS_B))`` with p×p scatter matrices (the baseline)."""
    x = x.to(torch.float64)
    n, p = x.shape
    mu = x.mean(0)
    ss_b = x.new_zeros((p, p))
    ss_w = x.new_zeros((p, p))
    for c in torch.unique(y):
        xc = x[y == c]
        mc = xc.mean(0)
        diff = (mc - mu)[:, None]
        ss_b += xc.shape[0] * diff @ diff.T
        zc = xc - mc
        ss_w += zc.T @ zc
    ss_b /= n
    ss_w /= n
    return float(torch.trace(ss_w @ torch.linalg.pinv(ss_b, rtol=1e-10, hermitian=True)))


def _time(fn, repeats: int) -> tuple:
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    gen = torch.Generator().manual_seed(0)
    print(f"N={args.n} C={args.classes} device={args.device} torch threads={torch.get_num_threads()}")
    print(f"{'p':>6} {'low-rank s':>11} {'pinv s':>9} {'ratio':>8} {'rel diff D':>11}")
    for p in args.widths:
        y = torch.arange(args.n) % args.classes
        centres = torch.randn(args.classes, p, generator=gen)
        x = (torch.randn(args.n, p, generator=gen) + 0.5 * centres[y]).to(args.device)
        y = y.to(args.device)
        fast_t, fast = _time(lambda: separation_fuzziness(x, y), args.repeats)
        slow_t, slow = _time(lambda: pinv_fuzziness(x, y), max(1, args.repeats - 2))
        print(f"{p:>6} {fast_t:>11.4f} {slow_t:>9.3f} {slow_t / fast_t:>7.1f}x "
              f"{abs(fast - slow) / abs(slow):>11.2e}")


if __name__ == "__main__":
    main()
