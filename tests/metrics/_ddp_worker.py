"""Worker of the 2-process DDP test of ``PixelCalibration`` (tests/metrics/test_distributed.py).

Kept in its own module so that processes started with the ``spawn`` method can import it by name
(the test directory is on ``sys.path`` under pytest's default import mode and spawned children
inherit the parent's ``sys.path``). It also holds the fixed dataset, so the parent (single-process
reference) and each rank build bit-identical maps without sending tensors between processes.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

WORLD_SIZE = 2
IGNORE = 255.0

CONFIGS: dict[str, dict[str, Any]] = {
    "pooled-top-label-hard": {},
    "per-image-positive-soft": {
        "aggregate": "per-image", "confidence": "positive", "target_type": "soft",
    },
    "strict-ignore-pooled": {"target_type": "strict", "ignore_index": IGNORE, "n_bins": 15},
    "strict-ignore-per-image-logits": {
        "target_type": "strict", "ignore_index": IGNORE, "aggregate": "per-image",
        "input": "logits",
    },
}  # fmt: skip
"""Option sets checked under DDP; each rank runs every one in the same process group."""

# Uneven shards: rank 0 sees 3 maps in 2 updates, rank 1 sees 5 maps in 3 updates, with map
# sizes changing from one update to the next (one update carries the (N, 1, H, W) channel).
SHARD_SHAPES: tuple[tuple[tuple[int, ...], ...], ...] = (
    ((1, 17, 23), (2, 8, 31)),
    ((2, 12, 12), (1, 1, 40, 9), (2, 5, 64)),
)


def _batch(shape: tuple[int, ...], seed: int, logits: bool, ignore: bool) -> tuple[Tensor, Tensor]:
    """One update's (preds, target), float32, on dyadic grids.

    Probabilities are k/256 (0, 1, 0.5 and 0.75 included) and targets mix exact 0/1 with soft
    levels k/256, so every per-pixel confidence, correctness and squared error is exact in
    float64 and all their sums are too: states built from them must agree bit for bit however
    the pixels are split. Logits are (k - 128)/16 (their sigmoid is not dyadic). With ``ignore``
    a fifth of the pixels are ``IGNORE`` and, in the 3rd batch, one whole map is.
    """
    gen = torch.Generator().manual_seed(1000 + seed)
    k = torch.randint(0, 257, shape, generator=gen)
    preds = (k - 128).float() / 16 if logits else k.float() / 256
    hard = (torch.rand(shape, generator=gen) * 256 < k).float()
    soft = torch.randint(0, 257, shape, generator=gen).float() / 256
    target = torch.where(torch.rand(shape, generator=gen) < 0.3, soft, hard)
    if ignore:
        target[torch.rand(shape, generator=gen) < 0.2] = IGNORE
        if seed == 2:
            target[0] = IGNORE  # a map with no valid pixel (skipped in per-image mode)
    return preds, target


def shard(rank: int, options: dict[str, Any]) -> list[tuple[Tensor, Tensor]]:
    """The updates ``(preds, target)`` that ``rank`` feeds its metric under ``options``."""
    logits = options.get("input") == "logits"
    ignore = options.get("ignore_index") is not None
    first = sum(len(s) for s in SHARD_SHAPES[:rank])
    return [_batch(shape, first + i, logits, ignore) for i, shape in enumerate(SHARD_SHAPES[rank])]


def all_updates(options: dict[str, Any]) -> list[tuple[Tensor, Tensor]]:
    """Every rank's updates, in rank order (the single-process run)."""
    return [batch for rank in range(WORLD_SIZE) for batch in shard(rank, options)]


def _clone(values: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in values.items()}


def run_rank(rank: int, world_size: int, store_path: str, out_dir: str) -> None:
    """Body of one rank: join a gloo group through a ``FileStore``, evaluate, save results.

    ``torch.multiprocessing`` passes the process index as ``rank``. For every entry of
    ``CONFIGS`` the rank saves its local state, the state after ``compute()`` (which must be
    the local one again: torchmetrics unsyncs), ``compute()``, ``reliability()`` and the
    explicitly synced state to ``out_dir/rank{rank}.pt`` (written then renamed, so a crashed
    rank leaves no partial file).
    """
    import torch.distributed as dist

    from densecal.metrics import PixelCalibration

    torch.set_num_threads(1)  # two ranks share the test machine's cores
    store = dist.FileStore(store_path, world_size)
    dist.init_process_group(
        "gloo", store=store, rank=rank, world_size=world_size, timeout=timedelta(seconds=60)
    )
    try:
        results: dict[str, dict[str, dict[str, Tensor]]] = {}
        for name, options in CONFIGS.items():
            metric = PixelCalibration(**options)
            for preds, target in shard(rank, options):
                metric.update(preds, target)
            local = _clone(metric.metric_state)
            computed = _clone(metric.compute())
            after_compute = _clone(metric.metric_state)
            table = _clone(metric.reliability())
            metric.sync()
            synced = _clone(metric.metric_state)
            metric.unsync()
            results[name] = {
                "local": local,
                "after_compute": after_compute,
                "compute": computed,
                "reliability": table,
                "synced": synced,
            }
        # a rank that saw no data at all still takes part in the reduction
        metric = PixelCalibration()
        if rank == 0:
            for preds, target in shard(0, {}):
                metric.update(preds, target)
        results["rank1-empty"] = {
            "compute": _clone(metric.compute()),
            "reliability": _clone(metric.reliability()),
        }
        path = Path(out_dir) / f"rank{rank}.pt"
        partial = path.with_suffix(".partial")
        torch.save(results, partial)
        os.replace(partial, path)
        dist.barrier()
    finally:
        dist.destroy_process_group()
