"""Load curves measured on shards of one data set: run on every rank by ``tests/metrics/test_distributed.py``.

``python -m torch.distributed.run --standalone --nproc_per_node 2 tests/dist_worker.py OUT``
makes each rank measure its shard (gloo, CPU) and write ``OUT/rank<r>.json``;
:func:`measure_all` with ``world=1`` gives the single-process curves over the
whole data.  Models are float64, so summing over ranks changes only the
order of float64 additions.
"""

import json
import sys
from pathlib import Path

import torch
from torch import nn

from dnn_spring import LoadCurveTracker, load_curve

COLUMNS = ["layer", "n_samples", "log_d", "log_inv_d", "log_trace_ratio", "rank_b", "cond_b"]


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(),
                         nn.Linear(24, 4)).double()


def _data():
    """240 samples of 4 classes; class 3 only at even indices, so rank 1 of 2 never sees it."""
    g = torch.Generator().manual_seed(1)
    y = torch.arange(240) % 3
    y[::6] = 3
    means = 2 * torch.randn(4, 10, generator=g, dtype=torch.float64)
    return means[y] + torch.randn(240, 10, generator=g, dtype=torch.float64), y


class _Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.lin = nn.Linear(width, width)

    def forward(self, x):
        mix = x.cumsum(1) / torch.arange(1, x.shape[1] + 1, dtype=x.dtype)[:, None]
        return (x + torch.tanh(self.lin(mix)), None)


class _TinyLM(nn.Module):
    def __init__(self, vocab=11, width=8):
        super().__init__()
        torch.manual_seed(2)
        self.emb = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(_Block(width) for _ in range(3))
        self.double()

    def forward(self, input_ids, attention_mask=None):
        x = self.emb(input_ids)
        for block in self.blocks:
            x = block(x)[0]
        return x


def _token_batches(n_batches=6, size=8, length=9, vocab=11):
    g = torch.Generator().manual_seed(3)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(0, vocab, (size, length), generator=g)
        mask = torch.arange(length) < torch.randint(3, length + 1, (size, 1), generator=g)
        out.append({"input_ids": torch.where(mask, ids, 0), "attention_mask": mask.long(),
                    "labels": ids[:, 0] % 3})
    return out


def measure_all(rank: int = 0, world: int = 1) -> dict:
    """Every case's curve on shard ``rank`` of ``world`` (the whole data when ``world`` is 1)."""
    x, y = _data()
    mlp, lm, batches = _mlp(), _TinyLM(), _token_batches()
    blocks = ["blocks.0", "blocks.1", "blocks.2"]
    no_labels = [{k: v for k, v in b.items() if k != "labels"} for b in batches]
    frames = {
        "label": load_curve(mlp, x[rank::world], y[rank::world], layers=["input", "1", "3", "4"]),
        "label_two_passes": load_curve(mlp, x[rank::world], y[rank::world], cache_bytes=0,
                                       batch_size=50),
        "mean": load_curve(lm, batches[rank::world], layers=blocks, pool="mean"),
        "last": load_curve(lm, batches[rank::world], layers=blocks, pool="last", cache_bytes=0),
        "next_token": load_curve(lm, no_labels[rank::world], layers=blocks, target="next_token"),
        "next_token_top5": load_curve(lm, no_labels[rank::world], layers=blocks, target="next_token",
                                      max_classes=5),
        "tracker": LoadCurveTracker(mlp, x[rank::world], y[rank::world], sample_size=None).measure(),
        "tracker_same_probe": LoadCurveTracker(mlp, x, y, sample_size=None).measure(),
    }
    return {name: frame[COLUMNS].to_dict("list") for name, frame in frames.items()}


if __name__ == "__main__":
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    out = measure_all(dist.get_rank(), dist.get_world_size())
    Path(sys.argv[1], f"rank{dist.get_rank()}.json").write_text(json.dumps(out))
    dist.destroy_process_group()
