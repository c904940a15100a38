"""Wall time of the full docs/science.md#sweeps MLP sweep on this machine, from measured group times.

The four MLP panels (ns_nl, lr_nl, dp_nl, bm_nl: 2,820 runs) are planned into
chunks exactly as the sweep runner does (``dnn_spring.sweep._runner.plan_tasks``: same
``group_key``, at most ``max_group_size`` members for this device).  Chunks
with the same batch size, member count, dropout and noise on/off cost the
same per epoch, so one chunk of each kind is built and timed:

* the per-epoch data pass (reordering and noise of every member's copy);
* ``--steps`` training steps after two warm-up steps (a full batch is one step);
* the set-up (initialisation and stacking of every member);
* copying one finished member out and its evaluation (accuracies, load curve).

A chunk then costs ``setup + epochs x (data + steps_per_epoch x step) +
members x evaluation``, and the estimate is the sum over all chunks, run one after the
other by one worker.  Every run is assumed to go its full epochs: early
stopping only shortens them, so this is an upper bound.  The paper's data
(MNIST at 10 x 10: 2,560 training samples of 100 features, 10 classes) is
replaced by the synthetic ``gaussian`` set of the same shape; the cost does
not depend on the values.

Usage::

    python benchmarks/estimate_sweep.py [--device cpu|cuda] [--steps 10] [--panels ns_nl ...]
                                        [--check-epochs 3] [--cuda-graphs]
"""

from __future__ import annotations

import argparse
import time

import torch

from _device import device_from  # benchmarks/_device.py

from dnn_spring.train._group import GroupLoop, train_group
from dnn_spring import load_dataset
from dnn_spring import expand_grid
from dnn_spring.sweep._runner import plan_tasks
from dnn_spring.train._record import finish_record, new_record

PANELS = ("ns_nl", "lr_nl", "dp_nl", "bm_nl")


def _kind(chunk: list) -> tuple:
    c = chunk[0]
    return (c.train.batch_size, len(chunk), any(m.model.dropout for m in chunk),
            any(m.train.noise for m in chunk))


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_chunk(chunk: list, data, device, steps: int, graphs: bool = False) -> dict:
    """Seconds to set up the chunk, per epoch's data pass, per step and per member's end."""
    start = time.perf_counter()
    fit = GroupLoop(chunk, data, device, cuda_graphs=graphs)
    ens = fit.model
    stepper = fit.graphs or ens  # the CUDA-graph step when asked for (on CUDA)
    _sync(device)
    t_setup = time.perf_counter() - start
    bs = chunk[0].train.batch_size
    start = time.perf_counter()
    xe, ye = fit.epoch_data()
    _sync(device)
    t_data = time.perf_counter() - start
    n = xe.shape[2]  # (members, features, samples)
    step = n if bs == 0 or bs >= n else bs
    offsets = [(s * step) % (n - step + 1) for s in range(steps + 2)]

    for s in offsets[:2]:
        stepper.step(xe[:, :, s:s + step].contiguous(), ye[:, s:s + step])
    _sync(device)
    start = time.perf_counter()
    for s in offsets[2:]:
        stepper.step(xe[:, :, s:s + step].contiguous(), ye[:, s:s + step])
    _sync(device)
    t_step = (time.perf_counter() - start) / steps
    start = time.perf_counter()
    finish_record(new_record(chunk[0], device), ens.export(0), data, hessian=False)
    _sync(device)
    t_eval = time.perf_counter() - start  # copying the member out, then its evaluation
    return {"setup": t_setup, "data": t_data, "step": t_step, "eval": t_eval,
            "steps_per_epoch": -(-n // step)}


def _chunk_seconds(t: dict, epochs: int, members: int) -> float:
    return t["setup"] + epochs * (t["data"] + t["steps_per_epoch"] * t["step"]) + members * t["eval"]


def _hms(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per kind of chunk")
    parser.add_argument("--panels", nargs="+", choices=PANELS, default=list(PANELS))
    parser.add_argument("--check-epochs", type=int, default=0,
                        help="also train each panel's first chunk for real for this many epochs "
                             "(train_group, evaluation included) and compare with the model")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="time the CUDA-graph step (dnn_spring.train._cuda_graphs; CUDA only)")
    args = parser.parse_args(argv)
    device = device_from(parser, args, graphs_for_every_trainer=False)  # passed on per chunk
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads")
    data = None
    measured, grand = {}, 0.0
    for panel in args.panels:
        configs = expand_grid(panel, "paper", {"dataset": "gaussian"})
        data = data or load_dataset(configs[0].data, device=device, flatten=True)
        chunks = plan_tasks(configs, device=device, workers=1)
        if not measured:  # warm-up: the first timed chunk would pay for thread pools, caches
            _time_chunk(chunks[0], data, device, 2, args.cuda_graphs)
        total = 0.0
        for chunk in chunks:
            kind = _kind(chunk)
            if kind not in measured:
                measured[kind] = _time_chunk(chunk, data, device, args.steps, args.cuda_graphs)
                t = measured[kind]
                print(f"  measured: batch {kind[0] or 'full'}, {kind[1]} members, dropout "
                      f"{'on' if kind[2] else 'off'}, noise {'on' if kind[3] else 'off'}: "
                      f"{1e3 * t['step']:.2f} ms/step x {t['steps_per_epoch']} steps + "
                      f"{1e3 * t['data']:.1f} ms data per epoch, {1e3 * t['setup']:.0f} ms "
                      f"set-up, {1e3 * t['eval']:.0f} ms evaluation per run")
            t = measured[kind]
            total += _chunk_seconds(t, chunk[0].train.epochs, len(chunk))
        grand += total
        if args.check_epochs:
            chunk = [c.replace(epochs=args.check_epochs, stop_loss=0.0, stop_delta=0.0)
                     for c in chunks[0]]
            t = measured[_kind(chunks[0])]
            model = _chunk_seconds(t, args.check_epochs, len(chunk))
            start = time.perf_counter()
            records = train_group(chunk, device=device, cuda_graphs=args.cuda_graphs)
            _sync(device)
            real = time.perf_counter() - start
            status = sorted({r["status"] for r in records})
            print(f"  check: first chunk ({len(chunk)} members, {args.check_epochs} epochs, "
                  f"status {status}) took {real:.2f} s, the model says {model:.2f} s")
        sizes = sorted({len(c) for c in chunks})
        print(f"{panel}: {len(configs)} runs in {len(chunks)} chunks of {sizes[0]}-{sizes[-1]} "
              f"members, {configs[0].train.epochs} epochs: estimate {_hms(total)}")
    print(f"all {len(args.panels)} panels: estimate {_hms(grand)} on one worker "
          f"(upper bound: no early stopping)")


if __name__ == "__main__":
    main()
