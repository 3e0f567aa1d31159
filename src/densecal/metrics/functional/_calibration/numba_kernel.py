"""Fused CPU kernels of the binary calibration update, compiled by numba.

The torch path of :func:`binary_kernel.cell_statistics` makes about a dozen
vectorised passes over a chunk (confidence, cell, edge test, key, two ``bincount``,
Brier, NLL). On the CPU :func:`fused_cells` makes ONE pass over the maps, in blocks of
``_BLOCK`` pixels, each in three short loops that stay in L1:

1. a SIMD loop (no loop-carried dependency, so LLVM vectorises it without fast-math) computes
   per pixel the same key as the torch path, with the same arithmetic (cell of the float64
   confidence, above-edge flag against the edge ``rint(q n) / n`` in q's dtype, prediction,
   label), the confidence, the squared Brier gap and the clamped probability of the label,
   and counts values that fail the input checks (probabilities outside [0, 1] or NaN,
   targets outside [0, 1]);
2. a scalar loop adds 1 to the key's count and the confidence to the (cell, above) sum;
3. a loop adds the Brier terms and multiplies the NLL terms in 4 interleaved lanes (fixed
   order: results do not depend on the machine), one ``log`` per 32 terms of a lane as in
   ``binary_kernel.sum_neg_log``.

Profile (``benchmarks/kernel_profile.py``, ``results/kernel_profile.json``; one thread of an
Intel Xeon (Emerald Rapids) at 2.96 GHz, 384 x 384 float32 maps, int64 targets): 3.2 ns = 9.5
cycles per pixel, the same with the data in L2 (compute bound, not memory bound). Step 1 takes
4.4 cycles against the 3.5 its 10.5 vector instructions per pixel need on 3 vector ports (of
which checks 0.6, NLL factors 0.7); step 2's two adds 4.3 cycles against the 1.3 its 4 loads
per pixel need (a 328 KB histogram misses L1, and runs of equal keys chain each add to the
previous one through memory); step 3 1.4 cycles (the product chains, four logs per block).
Tried and not kept (measured): 2-4 interleaved sub-histograms (+18 % on smooth maps, -21 % on
saturated ones), 8 product lanes, a 16-lane vectorised step 3, one packed add for count and
label, int32 counts (-5 %), 512-bit vectors (-3 to -11 %, only with LLVM's 256-bit preference
switched off for the whole process).

A positive subnormal float32 q (below 2^-126: probabilities computed in float64 and stored as
float32, logits in (-103, -87)) costs a microcode assist of about 150 cycles in float32
arithmetic; step 1 reads it as 0 in the edge test, which gives the same edge and side (tested),
at 0.3 cycles per pixel: 4.4 instead of 5.7 ns/pixel on maps with 3 % subnormals.

:func:`fused_codes` is the 8-bit path: a joint histogram of (value, label) codes of uint8 maps,
the sufficient statistic of everything the metrics sum (see ``binary_kernel.code_statistics``).

Pieces of a chunk run on ``torch.get_num_threads()`` Python threads (the kernels release the
GIL), each into its own histogram, summed at the end.

The kernels are used only where they give the same result as the torch path (checked in
``tests/metrics/test_calibration_fused.py``): CPU tensors, float32/float64 probabilities or
logits, hard 0/1 targets (bool or integer dtype) and no ``ignore_index``. Counts are exact and
identical; float64 sums differ from the torch path only by summation order (relative ~1e-13).
Out-of-range values never index outside the histograms (the cell is clamped), so unchecked
bad input gives wrong sums, never a crash.

numba is a core dependency; on a platform without numba wheels (it is then missing), for CUDA
tensors, or with ``DENSECAL_FUSED=0`` in the environment, every update takes the torch path.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from densecal.metrics.functional._calibration.options import (
    CalibrationOptions,
    Confidence,
    InputKind,
    TargetType,
)

__all__ = [
    "FusedCells",
    "fused_available",
    "fused_cells",
    "fused_codes",
    "fused_eligible",
]

_MIN_PIECE = 1 << 16
"""Pixels below which a row is not split across threads (thread hand-off costs ~20 us)."""

_BLOCK = 128
"""Pixels per block: 4 NLL lanes of 32 factors (one log each, products >= 1e-224)."""

_TINY32 = float(np.finfo(np.float32).tiny)
"""Smallest normal float32, 2^-126."""


class _Kernels(NamedTuple):
    top_label: Callable[..., int]  # float maps, top-label confidence
    positive: Callable[..., int]  # float maps, positive confidence
    codes: Callable[..., int]  # uint8 maps


PARTS = frozenset({"validate", "nll", "count", "conf_sum", "reduce", "subnormal_guard"})
"""Parts of :func:`maps_kernel`; ``benchmarks/kernel_profile.py`` times it with parts left out."""


def maps_kernel(  # pragma: no cover - compiled code is not traced by coverage
    top: bool, parts: frozenset[str] = PARTS, cache: bool = True
) -> Callable[..., int]:
    """Compile the float-map kernel for one confidence mode (``top``: top-label).

    ``parts`` switches pieces off at compile time, for profiling only (every part on is the
    kernel densecal runs): ``validate`` (the input checks), ``nll`` (the NLL factors of step
    1), ``count`` and ``conf_sum`` (the two adds of step 2), ``reduce`` (step 3),
    ``subnormal_guard`` (the edge test reads positive subnormal q as 0; same result). ``cache``:
    keep the compiled code on disk (numba caches a closure only if it calls no other closure).
    """
    import numba

    block = _BLOCK
    validate, nll_on, count_on = "validate" in parts, "nll" in parts, "count" in parts
    conf_on, reduce_on = "conf_sum" in parts, "reduce" in parts
    guard = "subnormal_guard" in parts

    # ``top``, ``block`` and the parts are compile-time constants: their branches leave the
    # SIMD loop
    @numba.njit(nogil=True, boundscheck=False, cache=cache)
    def maps(q: Any, t: Any, n_bins: Any, half: Any, thr: Any, n_cells: int,
             count: Any, conf_sum: Any, sums: Any) -> int:
        # q: (P,) float32/64 probabilities; t: (P,) integer labels; n_bins, half, thr in
        # q's dtype. count: (8 (n_cells + 1),) int64 by key ((cell, above), prediction,
        # label); conf_sum: (2 (n_cells + 1),) float64 by (cell, above); sums: (2,) Brier,
        # NLL. Returns the number of pixels failing the input checks.
        keys = np.zeros(block, np.int32)
        confs = np.empty(block, np.float64)
        gaps = np.zeros(block, np.float64)
        probs = np.ones(block, np.float64)
        g = np.float64(n_cells)
        tiny = q.dtype.type(_TINY32)
        zero = q.dtype.type(0.0)
        brier = 0.0
        nll = 0.0
        bad = 0
        n = q.shape[0]
        for start in range(0, n, block):
            m = min(block, n - start)
            qb = q[start:start + m]
            tb = t[start:start + m]
            if m < block:  # last block: neutral terms past the end
                gaps[:] = 0.0
                probs[:] = 1.0
            for j in range(m):  # step 1 (SIMD)
                qi = qb[j]
                q64 = np.float64(qi)
                r64 = 1.0 - q64
                conf = max(q64, r64) if top else q64
                cf = conf * g  # binning.cell_index; clamped (NaN -> 0): keys in range
                cf = cf if cf >= 0.0 else 0.0
                cf = cf if cf <= g else g
                # binning.conf_above_edge in q's dtype, on qe: a positive subnormal float32 q
                # (below 2^-126, from sigmoid of logits below -87) is read as 0 there, which
                # gives the same edge and side and avoids a microcode assist per value
                qe = zero if guard and (qi > zero) & (qi < tiny) else qi
                edge = np.rint(qe * n_bins) / n_bins
                if top:  # confidence side of the edge (see binning._above_nearest)
                    above = (qe - edge) * (qe - half) > 0
                else:
                    above = qi > edge
                ti = tb[j]
                label = ti >= 1  # integer labels: >= 0.5 is >= 1
                key = np.int32(cf) * 8
                if above:
                    key += 4
                if qi >= thr:
                    key += 2
                if label:
                    key += 1
                keys[j] = key
                confs[j] = conf
                gap = r64 if label else q64
                gaps[j] = gap * gap
                if nll_on:
                    clamped = min(max(q64, 1e-7), 1.0 - 1e-7)  # binary_kernel.NLL_EPS
                    low = 1.0 - clamped  # binary_kernel._brier_nll's formula, same roundings:
                    probs[j] = low + (2.0 * clamped - 1.0) if label else low
                if validate:
                    ok = (q64 >= 0.0) & (q64 <= 1.0) & (ti >= 0) & (ti <= 1)
                    bad += np.int64(not ok)
            for j in range(m):  # step 2
                key = np.uint32(keys[j])
                if count_on:
                    count[key] += 1
                if conf_on:
                    conf_sum[key >> np.uint32(2)] += confs[j]
            if reduce_on:  # step 3
                b0 = b1 = b2 = b3 = 0.0
                p0 = p1 = p2 = p3 = 1.0
                for j in range(0, block, 4):
                    b0 += gaps[j]
                    b1 += gaps[j + 1]
                    b2 += gaps[j + 2]
                    b3 += gaps[j + 3]
                    p0 *= probs[j]
                    p1 *= probs[j + 1]
                    p2 *= probs[j + 2]
                    p3 *= probs[j + 3]
                brier += (b0 + b1) + (b2 + b3)
                nll -= (np.log(p0) + np.log(p1)) + (np.log(p2) + np.log(p3))
        sums[0] += brier
        sums[1] += nll
        return bad

    return maps


def codes_kernel(cache: bool = True) -> Callable[..., int]:  # pragma: no cover - compiled
    """Compile the uint8 kernel (``cache``: keep the compiled code on disk)."""
    import numba

    @numba.njit(nogil=True, boundscheck=False, cache=cache)
    def codes(v: Any, t: Any, hist: Any) -> int:
        # v: (P,) uint8 values; t: (P,) integer labels; hist: (4, 512) int64 counts of
        # code 2 v + label, 4 interleaved copies (a run of equal codes is no dependency
        # chain). Returns the number of targets outside [0, 1].
        n = v.shape[0]
        bad = 0
        n4 = n - n % 4
        for i in range(0, n4, 4):
            for lane in range(4):
                ti = t[i + lane]
                hist[lane, np.uint32(v[i + lane]) * np.uint32(2) + np.uint32(ti >= 1)] += 1
                bad += np.int64((ti < 0) | (ti > 1))
        for i in range(n4, n):
            ti = t[i]
            hist[0, np.uint32(v[i]) * np.uint32(2) + np.uint32(ti >= 1)] += 1
            bad += np.int64((ti < 0) | (ti > 1))
        return bad

    return codes


@functools.lru_cache(maxsize=1)  # kept across _kernel.cache_clear(): compiled once
def _compile() -> _Kernels:  # pragma: no cover - compiled code is not traced by coverage
    return _Kernels(maps_kernel(True), maps_kernel(False), codes_kernel())


@functools.lru_cache(maxsize=1)
def _kernel() -> _Kernels | None:
    """The compiled kernels, or None without numba (compiled once, cached on disk by numba)."""
    if os.environ.get("DENSECAL_FUSED", "1") == "0":
        return None
    try:
        import numba  # noqa: F401
    except ImportError:
        return None
    return _compile()


def fused_available() -> bool:
    """Whether the fused kernels can run (numba importable and not disabled)."""
    return _kernel() is not None


def _hard_integer_target(target: Tensor) -> bool:
    return target.dtype == torch.bool or not (target.is_floating_point() or target.is_complex())


def fused_eligible(preds: Tensor, target: Tensor, options: CalibrationOptions) -> bool:
    """Whether :func:`fused_cells` gives the torch path's result for these inputs."""
    return (
        options.target_type is TargetType.HARD
        and options.ignore_index is None
        and preds.device.type == "cpu"
        and (preds.dtype in (torch.float32, torch.float64) or options.input is InputKind.LOGITS)
        and _hard_integer_target(target)
        and fused_available()
    )


@functools.lru_cache(maxsize=1)
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="densecal-fused")


def _numpy_target(target: Tensor) -> np.ndarray:
    t = target.contiguous()
    return (t.view(torch.uint8) if t.dtype == torch.bool else t).numpy()  # view: no copy


def _run_pieces(rows: int, length: int, run: Callable[[int, int, int, int], None]) -> int:
    """Call ``run(r, j, lo, hi)`` on every piece of every row, on the thread pool.

    Rows are split into pieces only when there are fewer rows than threads. Returns the number
    of pieces per row.
    """
    threads = max(1, torch.get_num_threads())
    pieces = max(1, min(threads, length // _MIN_PIECE)) if rows < threads else 1
    step = -(-length // pieces)
    jobs = [(r, j, j * step, min(length, (j + 1) * step)) for r in range(rows)
            for j in range(pieces)]  # fmt: skip
    if len(jobs) == 1 or threads == 1:
        for job in jobs:
            run(*job)
    else:
        list(_pool(threads).map(lambda job: run(*job), jobs))
    return pieces


class FusedCells(NamedTuple):
    """Sums of :func:`fused_cells` over ``R`` rows.

    Attributes:
        count: float64 ``(R, n_cells + 1, 2, 2, 2)`` by (cell, above, prediction, label).
        conf_sum: float64 ``(R, n_cells + 1, 2)`` by (cell, above).
        sums: float64 ``(2, R)``: Brier and NLL sums.
        invalid: number of pixels failing the input checks (probabilities NaN or outside
            [0, 1], targets outside [0, 1]); their sums are meaningless.
    """

    count: Tensor
    conf_sum: Tensor
    sums: Tensor
    invalid: int


def fused_cells(
    preds: Tensor, target: Tensor, options: CalibrationOptions, n_cells: int
) -> FusedCells:
    """Key counts, (cell, above) confidence sums and Brier/NLL sums of ``(R, P)`` maps.

    Args:
        preds: ``(R, P)`` CPU float32/float64 probabilities (or logits with
            ``options.input == "logits"``).
        target: ``(R, P)`` labels, bool or integer dtype (0/1 when valid).
        options: parsed options (hard targets, no ``ignore_index``; see :func:`fused_eligible`).
        n_cells: number of uniform cells (``binning.cell_resolution``).

    Returns:
        The :class:`FusedCells` of the rows.
    """
    kernels = _kernel()
    assert kernels is not None  # guarded by fused_eligible
    if options.input is InputKind.LOGITS:
        preds = torch.sigmoid(preds.to(torch.float64))
    q = preds.contiguous().numpy()
    t = _numpy_target(target)
    rows, length = q.shape
    kind = q.dtype.type
    scalars = (kind(options.n_bins), kind(0.5), kind(options.threshold), n_cells)
    kernel = kernels.top_label if options.confidence is Confidence.TOP_LABEL else kernels.positive
    n_keys = 2 * (n_cells + 1)
    threads = max(1, torch.get_num_threads())
    most = threads if rows < threads else 1
    count = np.zeros((rows, most, 4 * n_keys), np.int64)
    conf_sum = np.zeros((rows, most, n_keys), np.float64)
    sums = np.zeros((rows, most, 2), np.float64)
    invalid = np.zeros((rows, most), np.int64)

    def run(r: int, j: int, lo: int, hi: int) -> None:
        invalid[r, j] = kernel(q[r, lo:hi], t[r, lo:hi], *scalars, count[r, j], conf_sum[r, j],
                               sums[r, j])  # fmt: skip

    _run_pieces(rows, length, run)
    return FusedCells(
        torch.from_numpy(count.sum(1)).to(torch.float64).view(rows, n_cells + 1, 2, 2, 2),
        torch.from_numpy(conf_sum.sum(1)).view(rows, n_cells + 1, 2),
        torch.from_numpy(sums.sum(1)).T.contiguous(),
        int(invalid.sum()),
    )


def fused_codes(values: Tensor, target: Tensor) -> tuple[Tensor, int]:
    """Joint histogram of (value, label) of ``(R, P)`` uint8 maps and 0/1 targets.

    Args:
        values: ``(R, P)`` CPU uint8 maps.
        target: ``(R, P)`` labels, bool or integer dtype (0/1 when valid; label = 1[y >= 1]).

    Returns:
        float64 ``(R, 256, 2)`` pixel counts by (value, label), and the number of targets
        outside [0, 1].
    """
    kernels = _kernel()
    assert kernels is not None
    v = values.contiguous().numpy()
    t = _numpy_target(target)
    rows, length = v.shape
    threads = max(1, torch.get_num_threads())
    most = threads if rows < threads else 1
    hist = np.zeros((rows, most, 4, 512), np.int64)
    invalid = np.zeros((rows, most), np.int64)

    def run(r: int, j: int, lo: int, hi: int) -> None:
        invalid[r, j] = kernels.codes(v[r, lo:hi], t[r, lo:hi], hist[r, j])

    _run_pieces(rows, length, run)
    counts = torch.from_numpy(hist.sum((1, 2))).to(torch.float64).view(rows, 256, 2)
    return counts, int(invalid.sum())
