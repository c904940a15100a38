"""Benchmark: a 10 × 10 friction × noise grid of the second-order chain.

Reference setting of docs/science.md#chains (L = 7 blocks, dt = 0.05, t_max = 700, i.e.
14,000 steps, shared noise).  The vectorised backends integrate all 100
chains at once; sdeint needs one call per grid point.  Timing every sdeint
call would take minutes, so by default a subset of the grid points (spread
over the grid) is timed and the total is extrapolated linearly — the output
says so.  Run from the repository root::

    .venv/bin/python benchmarks/bench_spring.py                 # numpy, torch, sdeint subset
    .venv/bin/python benchmarks/bench_spring.py --sdeint-points 100   # time every sdeint call
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from dnn_spring.spring import LangevinConfig, simulate_langevin_batch


def grid_configs(n: int = 10) -> list:
    """``n × n`` configs over the phase diagram's default ranges, reference otherwise.

    μ→ from 3e-2 to 3e-4 with μ← = μ→ + 0.004, noise ε from 2e-2 to 5e-4.
    """
    base = LangevinConfig()
    return [base.replace(mu_right=float(mu), mu_left=float(mu) + 0.004, noise=float(eps))
            for mu in np.geomspace(3e-2, 3e-4, n) for eps in np.geomspace(2e-2, 5e-4, n)]


def time_vectorised(configs, backend, repeats, device=None) -> float:
    """Best wall time of ``repeats`` runs of the whole batch."""
    best = np.inf
    for r in range(repeats):
        start = time.perf_counter()
        simulate_langevin_batch(configs, backend=backend, seed=r, record_every=100,
                                device=device)
        best = min(best, time.perf_counter() - start)
    return best


def time_sdeint(configs, method, n_points) -> tuple:
    """(seconds per call, timed calls): one sdeint call per grid point of a subset."""
    pick = np.linspace(0, len(configs) - 1, n_points).round().astype(int)
    start = time.perf_counter()
    for i in pick:
        simulate_langevin_batch([configs[i]], backend="sdeint", method=method, seed=int(i),
                                record_every=100)
    return (time.perf_counter() - start) / len(pick), len(pick)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", type=int, default=10, help="grid side (default 10: 100 chains)")
    parser.add_argument("--sdeint-points", type=int, default=5,
                        help="sdeint calls actually timed per method (default 5), extrapolated")
    parser.add_argument("--methods", default="itoint,itoEuler", help="sdeint routines to time")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the vectorised runs")
    parser.add_argument("--device", default=None, help="also time torch on this device (cuda)")
    parser.add_argument("--json", default=None, help="write the numbers to this file")
    args = parser.parse_args(argv)

    configs = grid_configs(args.grid)
    n = len(configs)
    print(f"{args.grid} x {args.grid} grid = {n} chains, L=7, "
          f"{configs[0].n_steps} steps (t_max 700 / dt 0.05), shared noise")
    out = {"n_chains": n, "n_steps": configs[0].n_steps}
    out["numpy"] = time_vectorised(configs, "numpy", args.repeats)
    print(f"numpy Euler-Maruyama, all {n} chains at once: {out['numpy']:8.2f} s (best of {args.repeats})")
    out["torch_cpu"] = time_vectorised(configs, "torch", args.repeats, device="cpu")
    print(f"torch (cpu) Euler-Maruyama, all at once:    {out['torch_cpu']:8.2f} s")
    if args.device:
        time_vectorised(configs[:2], "torch", 1, device=args.device)  # warm-up
        out[f"torch_{args.device}"] = time_vectorised(configs, "torch", args.repeats, args.device)
        print(f"torch ({args.device}), all at once:              {out[f'torch_{args.device}']:8.2f} s")
    for method in args.methods.split(","):
        per_call, timed = time_sdeint(configs, method, min(args.sdeint_points, n))
        total = per_call * n
        note = "measured" if timed == n else f"extrapolated from {timed} timed calls"
        out[f"sdeint_{method}"] = {"per_call": per_call, "total": total, "timed_calls": timed}
        print(f"sdeint.{method}, one call per grid point: {per_call:6.2f} s/call -> "
              f"{total:8.1f} s for {n} ({note})")
        print(f"    speed-up numpy vs sdeint.{method}: {total / out['numpy']:7.0f}x; "
              f"torch cpu: {total / out['torch_cpu']:6.0f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(out, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
