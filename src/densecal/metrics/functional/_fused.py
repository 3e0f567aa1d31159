"""Fused CPU kernel of the binary calibration update: one pass per pixel, compiled by numba.

The torch path of :func:`densecal.metrics.functional._pixels.cell_statistics` makes about a
dozen vectorised passes over a chunk (confidence, cell, edge test, key, two ``bincount``,
Brier, NLL). On the CPU this kernel makes ONE pass: for each pixel it computes the same key
(cell of the confidence, above-edge flag, prediction, label) with the same arithmetic, adds 1
to the key's count and the confidence to the (cell, above) sum, and accumulates Brier and NLL.
Pieces of the chunk run on ``torch.get_num_threads()`` Python threads (the kernel releases
the GIL), each into its own histogram, summed at the end.

It is used only where it gives the same result as the torch path (checked in
``tests/metrics/test_calibration_fused.py``): CPU tensors, float32/float64 probabilities or
logits, hard 0/1 targets (bool or integer dtype) and no ``ignore_index``. Counts are exact and
identical; float64 sums differ from the torch path only by summation order (relative ~1e-13).

numba is optional (extra ``fast``); without it, or with ``DENSECAL_FUSED=0`` in the
environment, every update takes the torch path.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor

from densecal.metrics.functional._options import (
    CalibrationOptions,
    Confidence,
    InputKind,
    TargetType,
)

__all__ = ["fused_available", "fused_cells", "fused_eligible"]

_MIN_PIECE = 1 << 16
"""Pixels below which a row is not split across threads (thread hand-off costs ~20 us)."""


@functools.lru_cache(maxsize=1)
def _kernel() -> Callable[..., None] | None:
    """The compiled kernel, or None without numba (compiled once, cached on disk by numba)."""
    if os.environ.get("DENSECAL_FUSED", "1") == "0":
        return None
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def kernel(q: Any, t: Any, n_bins: Any, half: Any, thr: Any, n_cells: int, top: bool,
               count: Any, conf_sum: Any, sums: Any) -> None:  # pragma: no cover - compiled
        # q: (P,) float32/64 probabilities; t: (P,) 0/1 labels; n_bins, half, thr in q's dtype.
        # count: (8 (n_cells + 1),) int64 by key ((cell, above), prediction, label);
        # conf_sum: (2 (n_cells + 1),) float64 by (cell, above); sums: (2,) Brier, NLL.
        brier = 0.0  # total over closed blocks of 32 pixels (short serial sums: small error)
        block = 0.0
        nll = 0.0
        product = 1.0
        in_block = 0
        for i in range(q.shape[0]):
            qi = q[i]
            q64 = np.float64(qi)
            conf = max(q64, 1.0 - q64) if top else q64
            cell = np.int64(conf * n_cells)  # _binning.cell_index
            edge = np.rint(qi * n_bins) / n_bins  # _binning.conf_above_edge, in q's dtype
            if top:  # confidence side of the edge (see _binning._above_nearest)
                above = np.int64((qi - edge) * (qi - half) > 0)
            else:
                above = np.int64(qi > edge)
            pred = np.int64(qi >= thr)
            label = np.int64(t[i] >= 1)  # integer labels: >= 0.5 is >= 1
            key = cell * 2 + above
            count[key * 4 + pred * 2 + label] += 1
            conf_sum[key] += conf
            gap = q64 - label
            block += gap * gap
            clamped = min(max(q64, 1e-7), 1.0 - 1e-7)  # _pixels.NLL_EPS
            product *= (1.0 - clamped) + label * (2.0 * clamped - 1.0)
            in_block += 1
            if in_block == 32:  # one log per 32 pixels, as _pixels._sum_neg_log
                nll -= np.log(product)
                brier += block
                product = 1.0
                block = 0.0
                in_block = 0
        sums[0] += brier + block
        sums[1] += nll - np.log(product)

    return kernel


def fused_available() -> bool:
    """Whether the fused kernel can run (numba importable and not disabled)."""
    return _kernel() is not None


def fused_eligible(preds: Tensor, target: Tensor, options: CalibrationOptions) -> bool:
    """Whether :func:`fused_cells` gives the torch path's result for these inputs."""
    return (
        options.target_type is TargetType.HARD
        and options.ignore_index is None
        and preds.device.type == "cpu"
        and (preds.dtype in (torch.float32, torch.float64) or options.input is InputKind.LOGITS)
        and (target.dtype == torch.bool or not target.is_floating_point())
        and not target.is_complex()
        and fused_available()
    )


@functools.lru_cache(maxsize=1)
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="densecal-fused")


def fused_cells(
    preds: Tensor, target: Tensor, options: CalibrationOptions, n_cells: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Key counts, (cell, above) confidence sums and Brier/NLL sums of ``(R, P)`` maps.

    Args:
        preds: ``(R, P)`` CPU float32/float64 probabilities (or logits with
            ``options.input == "logits"``).
        target: ``(R, P)`` 0/1 labels, bool or integer dtype (values already validated).
        options: parsed options (hard targets, no ``ignore_index``; see :func:`fused_eligible`).
        n_cells: number of uniform cells (``_binning.cell_resolution``).

    Returns:
        ``count`` float64 ``(R, n_cells + 1, 2, 2, 2)`` by (cell, above, prediction, label);
        ``conf_sum`` float64 ``(R, n_cells + 1, 2)``; ``sums`` float64 ``(2, R)`` (Brier, NLL).
    """
    kernel = _kernel()
    assert kernel is not None  # guarded by fused_eligible
    if options.input is InputKind.LOGITS:
        preds = torch.sigmoid(preds.to(torch.float64))
    q = preds.contiguous().numpy()
    t = target.contiguous()
    t = (t.to(torch.uint8) if t.dtype == torch.bool else t).numpy()
    rows, length = q.shape
    kind = q.dtype.type
    scalars = (kind(options.n_bins), kind(0.5), kind(options.threshold), n_cells,
               options.confidence is Confidence.TOP_LABEL)
    threads = max(1, torch.get_num_threads())
    pieces = max(1, min(threads, length // _MIN_PIECE)) if rows < threads else 1
    step = -(-length // pieces)
    n_keys = 2 * (n_cells + 1)
    count = np.zeros((rows, pieces, 4 * n_keys), np.int64)
    conf_sum = np.zeros((rows, pieces, n_keys), np.float64)
    sums = np.zeros((rows, pieces, 2), np.float64)
    jobs = [(r, j) for r in range(rows) for j in range(pieces)]

    def run(job: tuple[int, int]) -> None:
        r, j = job
        lo, hi = j * step, min(length, (j + 1) * step)
        kernel(q[r, lo:hi], t[r, lo:hi], *scalars, count[r, j], conf_sum[r, j], sums[r, j])

    if len(jobs) == 1 or threads == 1:
        for job in jobs:
            run(job)
    else:
        list(_pool(threads).map(run, jobs))
    return (
        torch.from_numpy(count.sum(1)).to(torch.float64).view(rows, n_cells + 1, 2, 2, 2),
        torch.from_numpy(conf_sum.sum(1)).view(rows, n_cells + 1, 2),
        torch.from_numpy(sums.sum(1)).T.contiguous(),
    )
