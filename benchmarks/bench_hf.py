"""Streaming load curves of a GPT-2-small shaped model against the naive way: time and peak memory.

    python benchmarks/bench_hf.py [--n-seq 2048 ...] [--seq-len 128] [--layers 12] [--width 768]
                                  [--modes mean next_token] [--methods streaming naive] [--device cpu]

The model is ``transformers.GPT2Model`` at random initialisation (seed 0):
``--layers`` blocks of width ``--width`` (12 and 768: GPT-2 small), GPT-2's
vocabulary of 50,257 tokens.  The probe set is ``--n-seq`` sequences of
``--seq-len`` tokens (seed 1), drawn from a Zipf law (exponent 1.1) over
the vocabulary, as text roughly is, with an all-ones attention mask, in
batches of ``--batch``; the points are the outputs of the blocks.

Two modes:

- ``mean``: one sample per sequence, its class one of 10 (seeded), the
  block output averaged over the (masked) tokens;
- ``next_token``: one sample per position with a next token, its class
  that token; ``--max-classes K`` keeps (in both methods) only the
  positions whose next token is one of the K most frequent.

Two methods:

- ``streaming``: :func:`dnn_spring.load_curve` with ``pool="mean"`` or
  ``target="next_token"`` and ``cache_bytes=0``: statistics stream over the
  batches in two forward passes, O(p·C) numbers per point (the next-token
  budget ``class_bytes`` is lifted, so that every class is measured);
- ``naive``: forward hooks keep every block's output (float32) over the
  whole probe set; then per point ``torch.cat``, pool (or take every
  position), float64, the p×p scatter matrices and
  ``Tr(SS_W · pinv(SS_B))``.

Each (mode, method, N) runs in a fresh subprocess.  **Peak memory** is on
CPU the peak resident set size of that process while the method runs, less
its resident size just before (Linux: the high-water mark ``VmHWM`` of
``/proc/self/status``, reset through ``/proc/self/clear_refs`` just before
the method, so the model's construction does not count; torch's CPU
allocations are ordinary heap memory, which ``tracemalloc`` would not
see); on CUDA ``torch.cuda.max_memory_allocated`` less the memory allocated
before.  The peak includes the model's own forward pass at the batch size
(its first-call allocations too), the same for both methods.  Prints one line per run (seconds, peak MiB, classes, the largest
|Δ log D| between the methods) and the naive/streaming memory ratio.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dnn_spring import load_curve
from dnn_spring import transformer_blocks

VOCAB = 50257


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


class PeakMemory:
    """Peak memory of the block it wraps, in bytes, above the memory in use when it starts."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.peak = 0

    def __enter__(self):
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self.base = _status_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.peak = _status_kib("VmHWM") * 1024 - self.base


def make_model(layers: int, width: int, seq_len: int, device: str):
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)  # a benchmark script: the model's initialisation is seeded here
    config = GPT2Config(n_layer=layers, n_embd=width, n_head=max(width // 64, 1),
                        vocab_size=VOCAB, n_positions=seq_len)
    return GPT2Model(config).eval().to(device)


def make_batches(n_seq: int, seq_len: int, batch: int, mode: str, device: str) -> list:
    """Seeded Zipf-distributed token ids in dict batches (with 10-class labels in ``mean`` mode)."""
    rng = np.random.default_rng(1)
    ranks = np.arange(1, VOCAB + 1, dtype=np.float64)
    prob = ranks ** -1.1
    ids = torch.from_numpy(rng.choice(VOCAB, size=(n_seq, seq_len), p=prob / prob.sum()))
    labels = torch.from_numpy(rng.integers(0, 10, size=n_seq))
    out = []
    for i in range(0, n_seq, batch):
        item = {"input_ids": ids[i:i + batch].to(device),
                "attention_mask": torch.ones_like(ids[i:i + batch]).to(device)}
        if mode == "mean":
            item["labels"] = labels[i:i + batch].to(device)
        out.append(item)
    return out


def pinv_log_d(x: torch.Tensor, y: torch.Tensor) -> float:
    """log ``Tr(SS_W · pinv(SS_B))`` in float64 with p×p scatter matrices."""
    x = x.to(torch.float64)
    n = x.shape[0]
    classes, index = torch.unique(y, return_inverse=True)
    counts = torch.bincount(index, minlength=len(classes)).to(x)
    means = torch.zeros(len(classes), x.shape[1], dtype=x.dtype, device=x.device)
    means.index_add_(0, index, x)
    means /= counts[:, None]
    centred = means - x.mean(0)
    ss_b = (centred * (counts / n)[:, None]).T @ centred
    within = x - means[index]
    ss_w = within.T @ within / n
    return float(torch.log(torch.trace(ss_w @ torch.linalg.pinv(ss_b, hermitian=True))))


def _top_tokens(batches, k):
    """The ``k`` most frequent next tokens (ties: the smaller id), as ``load_curve`` keeps them."""
    ids, counts = torch.unique(torch.cat([b["input_ids"][:, 1:].flatten() for b in batches]),
                               return_counts=True)
    order = torch.sort(-counts, stable=True).indices
    return ids[order[:k]]


def naive(model, batches, names, mode, max_classes=None) -> list:
    """Keep every block's output, then cat, pool and pinv per block."""
    modules = dict(model.named_modules())
    store = {name: [] for name in names}

    def keep(name):
        return lambda module, args, out: store[name].append(
            (out[0] if isinstance(out, tuple) else out).detach())

    handles = [modules[name].register_forward_hook(keep(name)) for name in names]
    try:
        with torch.no_grad():
            for b in batches:
                model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    finally:
        for h in handles:
            h.remove()
    mask = torch.cat([b["attention_mask"] for b in batches])
    out = []
    for name in names:
        h = torch.cat(store.pop(name))  # (N, T, d)
        if mode == "mean":
            w = mask[..., None].to(h.dtype)
            x, y = (h * w).sum(1) / w.sum(1), torch.cat([b["labels"] for b in batches])
        else:
            ids = torch.cat([b["input_ids"] for b in batches])
            valid = (mask[:, :-1] * mask[:, 1:]).bool()
            if max_classes is not None:
                valid &= torch.isin(ids[:, 1:], _top_tokens(batches, max_classes))
            x, y = h[:, :-1][valid], ids[:, 1:][valid]
        del h
        out.append(pinv_log_d(x, y))
    return out


def streaming(model, batches, names, mode, max_classes=None) -> list:
    kwargs = ({"pool": "mean"} if mode == "mean" else
              {"target": "next_token", "max_classes": max_classes, "class_bytes": 2**40})
    curve = load_curve(model, batches, layers=names, inverse=False, cache_bytes=0, warn=False,
                       **kwargs)
    return curve["log_d"].tolist()


def child(args) -> None:
    """One (mode, method, N) measurement; prints one JSON line."""

    torch.set_num_threads(args.threads)
    model = make_model(args.layers, args.width, args.seq_len, args.device)
    batches = make_batches(args.n_seq[0], args.seq_len, args.batch, args.modes[0], args.device)
    names = transformer_blocks(model)
    run = {"streaming": streaming, "naive": naive}[args.methods[0]]
    with PeakMemory(args.device) as peak:
        start = time.perf_counter()
        log_d = run(model, batches, names, args.modes[0], args.max_classes)
        seconds = time.perf_counter() - start
    ids = torch.cat([b["input_ids"][:, 1:] for b in batches])
    classes = 10 if args.modes[0] == "mean" else min(int(torch.unique(ids).numel()),
                                                     args.max_classes or VOCAB)
    print(json.dumps({"seconds": seconds, "peak": peak.peak, "log_d": log_d, "classes": classes}))


def _spawn(args, mode, method, n) -> dict:
    cmd = [sys.executable, __file__, "--child", "--modes", mode, "--methods", method,
           "--n-seq", str(n), "--seq-len", str(args.seq_len), "--layers", str(args.layers),
           "--width", str(args.width), "--batch", str(args.batch),
           "--threads", str(args.threads), "--device", args.device]
    if args.max_classes:
        cmd += ["--max-classes", str(args.max_classes)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-seq", type=int, nargs="+", default=[2048])
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--modes", nargs="+", default=["mean", "next_token"],
                   choices=["mean", "next_token"])
    p.add_argument("--methods", nargs="+", default=["streaming", "naive"],
                   choices=["streaming", "naive"])
    p.add_argument("--max-classes", type=int, default=None,
                   help="next_token mode: keep the K most frequent next tokens (both methods)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    print(f"GPT2Model {args.layers} layers x {args.width}, {args.seq_len} tokens, batch {args.batch}, "
          f"max_classes {args.max_classes}, "
          f"device {args.device}, {args.threads} threads, torch {torch.__version__}")
    for mode in args.modes:
        for n in args.n_seq:
            res = {m: _spawn(args, mode, m, n) for m in args.methods}
            for m, r in res.items():
                if "error" in r:
                    print(f"{mode:>10} N={n:<5} {m:>9}: failed: {r['error']}")
                    continue
                print(f"{mode:>10} N={n:<5} {m:>9}: {r['seconds']:8.1f} s  peak "
                      f"{r['peak'] / 2**20:9.1f} MiB  C={r['classes']}")
            if all("log_d" in r for r in res.values()) and len(res) == 2:
                a, b = res["streaming"], res["naive"]
                diff = max(abs(x - y) for x, y in zip(a["log_d"], b["log_d"]))
                print(f"{'':>10} naive/streaming peak memory {b['peak'] / max(a['peak'], 1):.1f}x, "
                      f"time {b['seconds'] / a['seconds']:.2f}x, max |dlog D| {diff:.2e}")


if __name__ == "__main__":
    main()
