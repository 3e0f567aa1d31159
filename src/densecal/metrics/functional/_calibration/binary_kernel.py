"""Per-pixel kernel of the calibration metrics: input checks and one chunk's sufficient sums.

``chunk_statistics`` turns a chunk of maps into per-row histograms and sums (rows = images in
per-image mode, one row when pooled). The caller walks a batch in chunks of bounded size so the
temporaries stay small and peak memory does not grow with the batch.

Data path of one chunk (every step is one vectorised pass; no sort, no search):

1. ``cell``: the uniform cell ``floor(conf G)`` of each confidence (G: ``cell_resolution``),
   and ``above``: whether the confidence is strictly above its nearest bin edge (exact edge
   rule, ``binning.conf_above_edge``). Together they fix both the fine bin (a regroup of
   cells) and the equal-width bin (``binning.cell_bins``), so ONE key per pixel serves both
   histograms.
2. Hard targets without ``ignore_index`` (the common case) add two bits to the key, the
   prediction 1[q >= threshold] and the label 1[y >= 0.5]: then pixel counts, accuracy sums
   and the correct count all come from a single ``bincount`` of the key, and only the
   confidence sum needs a weighted one. Other target types weight the histograms instead.
3. Brier and NLL are scalar sums; with 0/1 targets the NLL takes one ``log`` per 32 pixels
   (the log of a product of 32 clamped probabilities, >= 1e-224: no underflow).
4. The key histograms are regrouped into the ``(R, n_bins)`` and ``(R, fine_bins)`` sums.

Floating-point policy: probabilities keep their dtype for the edge tests (float32 maps are
compared with float32 edges, as the ASLP code does); confidences are widened to float64 once,
and every sum is accumulated in float64.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
from torch import Tensor

from densecal.errors import input_error
from densecal.metrics.functional._calibration.binning import (
    cell_bins,
    cell_histogram,
    cell_index,
    cell_resolution,
    cells_to_bins,
    cells_to_fine,
    conf_above_edge,
    pair_sum,
)
from densecal.metrics.functional._calibration.numba_kernel import (
    fused_available,
    fused_cells,
    fused_codes,
    fused_eligible,
)
from densecal.metrics.functional._calibration.options import (
    CalibrationOptions,
    Confidence,
    InputKind,
    TargetType,
)

__all__ = [
    "CellStatistics",
    "ChunkStatistics",
    "cell_statistics",
    "chunk_statistics",
    "code_statistics",
    "codes_eligible",
    "match_shapes",
    "regroup",
    "validate_values",
]

NLL_EPS = 1e-7
"""Probabilities are clamped to [NLL_EPS, 1 - NLL_EPS] for the NLL (as in the ASLP code)."""


def match_shapes(
    preds: Tensor, target: Tensor, *, uint8: bool = False
) -> tuple[Tensor, Tensor]:
    """Check dtypes/devices and bring ``(N, 1, *S)`` / ``(N, *S)`` pairs to ``(N, P)``.

    ``uint8``: also accept uint8 maps (8-bit probabilities v / 255).

    Raises:
        DensecalInputError: preds not floating point (nor uint8 when allowed), devices differ,
            or shapes mismatch.
    """
    allowed = torch.is_tensor(preds) and (
        preds.is_floating_point() or (uint8 and preds.dtype == torch.uint8)
    )
    if not allowed:
        got = preds.dtype if torch.is_tensor(preds) else type(preds).__name__
        raise input_error("preds", f"expected a floating-point tensor, got {got}")
    if not torch.is_tensor(target):
        raise input_error("target", f"expected a tensor, got {type(target).__name__}")
    if target.device != preds.device:
        raise input_error("target", f"on device {target.device} but preds on {preds.device}")
    if preds.ndim == 0:
        raise input_error("preds", "expected shape (N, *spatial) or (N, 1, *spatial), got a scalar")
    if preds.shape != target.shape:
        p, t = preds, target
        if p.ndim == t.ndim + 1 and p.shape[1] == 1:
            p = p.squeeze(1)
        elif t.ndim == p.ndim + 1 and t.ndim > 1 and t.shape[1] == 1:
            t = t.squeeze(1)
        if p.shape != t.shape:
            raise input_error(
                "target",
                f"shape {tuple(target.shape)} does not match preds shape {tuple(preds.shape)}",
            )
    n = preds.shape[0]
    return preds.reshape(n, -1), target.reshape(n, -1)


def validate_values(preds: Tensor, target: Tensor, options: CalibrationOptions) -> None:
    """Check finiteness and value ranges with a single device-to-host transfer.

    ``preds`` is checked everywhere; ``target`` only outside ``ignore_index`` pixels.

    Raises:
        DensecalInputError: NaN/Inf values, probabilities or target outside [0, 1].
    """
    if preds.numel() == 0:
        return
    t = target.view(torch.uint8) if target.dtype == torch.bool else target
    if options.ignore_index is not None:
        t = torch.where(t == options.ignore_index, torch.zeros_like(t[:1, :1]), t)
    if preds.dtype == torch.uint8:  # 8-bit maps v / 255: always in [0, 1]
        p_min, p_max = 0.0, 1.0
        t_min, t_max = torch.stack(torch.aminmax(t)).double().tolist()
    else:
        p_min, p_max, t_min, t_max = torch.stack(
            [*torch.aminmax(preds), *torch.aminmax(t)]
        ).double().tolist()  # fmt: skip
    if not (math.isfinite(p_min) and math.isfinite(p_max)):
        raise input_error("preds", "contains NaN or Inf values")
    if options.input is InputKind.PROBS and (p_min < 0.0 or p_max > 1.0):
        raise input_error(
            "preds",
            f"values outside [0, 1] (min {p_min:.4g}, max {p_max:.4g}); "
            "pass input='logits' for raw scores",
        )
    if not (math.isfinite(t_min) and math.isfinite(t_max)):
        raise input_error("target", "contains NaN or Inf values")
    if t_min < 0.0 or t_max > 1.0:
        hint = "" if options.ignore_index is not None else "; pass ignore_index for void pixels"
        raise input_error(
            "target",
            f"values outside [0, 1] (min {t_min:.4g}, max {t_max:.4g}, ignore_index excluded)"
            + hint,
        )


def _correctness(pos: Tensor, y: Tensor, target_type: TargetType) -> Tensor:
    """Top-label correctness of the prediction ``pos`` (bool) against the target ``y``."""
    if target_type is TargetType.HARD:
        return (pos == (y >= 0.5)).double()
    if target_type is TargetType.SOFT:
        return torch.where(pos, y, 1.0 - y)
    return torch.where(pos, y == 1.0, y == 0.0).double()


def positive_frequency(y: Tensor, target_type: TargetType) -> Tensor:
    """Indicator (or probability) that a pixel is foreground, per target type."""
    if target_type is TargetType.HARD:
        return (y >= 0.5).double()
    if target_type is TargetType.SOFT:
        return y
    return (y == 1.0).double()


class CellStatistics(NamedTuple):
    """Per-row sums over the (cell, above-edge) keys of one or more chunks (float64; R rows).

    Cell sums add across chunks, so a pooled update regroups them into bins only once.

    Attributes:
        cells: ``(count, conf_sum, acc_sum)``, each ``(R, n_cells + 1, 2)`` (see
            ``binning.cell_bins``).
        sums: ``(3, R)``: top-label correct, Brier and NLL sums.
        invalid: pixels that failed the input checks made on the way (fused kernels only;
            see ``numba_kernel.FusedCells``); the caller raises the usual error when non-zero.
    """

    cells: tuple[Tensor, ...]
    sums: Tensor
    invalid: int = 0

    def __add__(self, other: object) -> CellStatistics:
        if not isinstance(other, CellStatistics):
            return NotImplemented
        cells = tuple(a + b for a, b in zip(self.cells, other.cells, strict=True))
        return CellStatistics(cells, self.sums + other.sums, self.invalid + other.invalid)


class ChunkStatistics(NamedTuple):
    """Per-row sums of one chunk (float64; R rows).

    Attributes:
        coarse: ``(count, conf_sum, acc_sum)``, each ``(R, n_bins)``.
        fine: ``(count, conf_sum, acc_sum)``, each ``(R, fine_bins)``.
        sums: ``(4, R)``: pixel count, top-label correct, Brier and NLL sums.
    """

    coarse: tuple[Tensor, ...]
    fine: tuple[Tensor, ...]
    sums: Tensor


def _probabilities(preds: Tensor, options: CalibrationOptions) -> tuple[Tensor, torch.dtype]:
    """Probabilities q (float32 or float64) and the precision the bin edges are rounded to."""
    if options.input is InputKind.LOGITS:
        return torch.sigmoid(preds.to(torch.float64)), torch.float64
    if preds.dtype in (torch.float32, torch.float64):
        return preds, preds.dtype
    return preds.to(torch.float32), preds.dtype  # half / bfloat16: exact in float32


def _row_keys(key: Tensor, n_keys: int) -> tuple[Tensor, int]:
    """Offset the ``(R, P)`` keys of row r by ``r * n_keys``; returns keys and their total."""
    rows = key.shape[0]
    if rows > 1:
        key = key + torch.arange(0, rows * n_keys, n_keys, device=key.device, dtype=key.dtype)[
            :, None
        ]
    return key, rows * n_keys


_PRODUCT_BLOCK = 32
"""Probabilities multiplied before one log: 32 values >= 1e-7 have a product >= 1e-224."""


def sum_neg_log(v: Tensor) -> Tensor:
    """``-sum(log v)`` over the last dim of ``(R, P)`` float64 values in [1e-7, 1].

    Multiplies blocks of 32 values first (31 roundings of 2^-53 each: a relative error below
    4e-15 per block, i.e. an absolute error below 4e-15 per 32 pixels in the sum), then takes
    one log per block: 32 times fewer logs than pixels.
    """
    rows, n = v.shape
    pad = -n % _PRODUCT_BLOCK
    if pad:
        v = torch.nn.functional.pad(v, (0, pad), value=1.0)
    v = v.reshape(rows, _PRODUCT_BLOCK, -1)
    while v.shape[1] > 1:  # pairwise products of contiguous halves
        half = v.shape[1] // 2
        v = v[:, :half] * v[:, half:]
    return v.log_().sum((1, 2)).neg_()


def _is_binary(target: Tensor, y: Tensor) -> bool:
    """Whether every target value is exactly 0 or 1 (``y``: the target as float64)."""
    if target.dtype == torch.bool:
        return True
    if not target.is_floating_point():
        low, high = torch.aminmax(target)
        return bool((low >= 0) & (high <= 1))
    # y (1 - y) >= 0 on [0, 1], and exactly 0 only at 0 and 1 (no underflow in float64)
    return bool(torch.dot(y.reshape(-1), (1.0 - y).reshape(-1)) == 0.0)


def _brier_nll(q: Tensor, y: Tensor, binary: bool, weight: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per-row sums of (q - y)^2 and of BCE(q, y), q clamped to [1e-7, 1 - 1e-7] for the NLL."""
    qc = q.clamp(NLL_EPS, 1.0 - NLL_EPS)
    if binary and weight is None:
        brier = (q - y).square_().sum(-1)
        # -(y log qc + (1 - y) log(1 - qc)) is -log(qc) or -log(1 - qc) for 0/1 targets
        picked = (2.0 * qc - 1.0).mul_(y).add_(1.0 - qc)  # qc where y = 1, 1 - qc where 0
        return brier, sum_neg_log(picked)
    brier = (q - y).square_()
    nll = torch.lerp(qc.log(), (1.0 - qc).log_(), 1.0 - y).neg_()  # -(y log q + (1-y) log(1-q))
    if weight is not None:
        brier, nll = brier.mul_(weight), nll.mul_(weight)
    return brier.sum(-1), nll.sum(-1)


def _hard_cells(
    count: Tensor, conf_sum: Tensor, top_label: bool
) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
    """Cell sums and correct counts from counts by (row, cell, above, prediction, label).

    Args:
        count: ``(R, n_cells + 1, 2, 2, 2)`` pixel counts.
        conf_sum: ``(R, n_cells + 1, 2)`` confidence sums by (cell, above).
        top_label: accuracy = prediction == label (else: label == 1).

    Returns:
        ``(count, conf_sum, acc_sum)`` each ``(R, n_cells + 1, 2)``, and ``(R,)`` correct counts.
    """
    hits = count[..., 0, 0] + count[..., 1, 1]  # prediction == label
    acc = hits if top_label else pair_sum(count[..., 1])
    return (pair_sum(pair_sum(count)), conf_sum, acc), hits.sum((1, 2))


def cell_statistics(
    preds: Tensor, target: Tensor, options: CalibrationOptions, rows: int
) -> CellStatistics:
    """Key histograms and sums of a chunk of pixels laid out as ``rows`` rows.

    Args:
        preds: ``(rows, P)`` probabilities or logits, original dtype.
        target: ``(rows, P)`` targets, any dtype.
        options: parsed options.
        rows: number of rows (images in per-image mode, 1 when pooled).

    Returns:
        The chunk's :class:`CellStatistics`.
    """
    top_label = options.confidence is Confidence.TOP_LABEL
    n_cells = cell_resolution(options.n_bins, options.fine_bins)
    if preds.dtype == torch.uint8:
        return code_statistics(preds, target, options, rows)
    if fused_eligible(preds, target, options):  # the same sums in one pass (CPU, numba)
        fused = fused_cells(preds, target, options, n_cells)
        cells, correct = _hard_cells(fused.count, fused.conf_sum, top_label)
        return CellStatistics(cells, torch.cat([correct[None], fused.sums]), fused.invalid)
    q, precision = _probabilities(preds, options)

    # 1. one key per pixel: (cell of the confidence, above its nearest edge)
    q64 = q.to(torch.float64)
    conf = torch.maximum(q64, 1.0 - q64) if top_label else q64
    key = cell_index(conf, n_cells).mul_(2)
    key += conf_above_edge(q, options.n_bins, top_label=top_label, precision=precision)
    pos = q >= options.threshold

    y = target.to(torch.float64)
    weight = None
    if options.ignore_index is not None:
        valid = y != options.ignore_index
        y = torch.where(valid, y, 0.0)
        weight = valid.to(torch.float64)

    if options.target_type is TargetType.HARD and weight is None:
        # 2a. counts by (key, prediction, label): every sum but the confidence is a count
        label = target if target.dtype == torch.bool else target >= 0.5
        key = key.mul_(4).add_(pos, alpha=2).add_(label)
        key, n_keys = _row_keys(key, 8 * (n_cells + 1))
        count = cell_histogram(key, n_keys).view(rows, n_cells + 1, 2, 2, 2)
        conf_sum = cell_histogram(key, n_keys, conf).view(rows, n_cells + 1, 2, 2, 2)
        cells, correct = _hard_cells(count, conf_sum.sum((-1, -2)), top_label)
    else:
        # 2b. weighted histograms of the (cell, above) key
        correct = _correctness(pos, y, options.target_type)
        acc = correct if top_label else positive_frequency(y, options.target_type)
        if weight is not None:
            conf, acc, correct = conf * weight, acc * weight, correct * weight
        key, n_keys = _row_keys(key, 2 * (n_cells + 1))
        cells = tuple(
            cell_histogram(key, n_keys, w).view(rows, n_cells + 1, 2) for w in (weight, conf, acc)
        )
        correct = correct.sum(-1)

    # 3. Brier and NLL
    brier, nll = _brier_nll(q64, y, _is_binary(target, y), weight)
    return CellStatistics(cells, torch.stack([correct, brier, nll]))


U8_LEVELS = 255
"""An 8-bit map value v is the probability ``float32(v) / 255`` (correctly rounded float32)."""


def codes_eligible(preds: Tensor, target: Tensor, options: CalibrationOptions) -> bool:
    """Whether uint8 maps can take :func:`code_statistics` (else they are divided by 255 first).

    Needs hard 0/1 targets of a bool or integer dtype and no ``ignore_index``: then the joint
    histogram of (value, label) is a sufficient statistic of every sum.
    """
    return (
        preds.dtype == torch.uint8
        and options.input is InputKind.PROBS
        and options.target_type is TargetType.HARD
        and options.ignore_index is None
        and (target.dtype == torch.bool or not (target.is_floating_point() or target.is_complex()))
    )


@functools.lru_cache(maxsize=16)
def _code_table(
    n_bins: int, n_cells: int, top_label: bool, threshold: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per (value, label) code of an 8-bit map, the quantities the torch path computes per pixel.

    Returns float64/int64 CPU tensors over the 512 codes ``2 v + label``: the full key
    ((cell, above), prediction, label) as in :func:`cell_statistics` step 2a, the confidence,
    the squared Brier gap and the NLL term ``-log`` of the clamped probability of the label.
    """
    q = torch.arange(256, dtype=torch.float32) / U8_LEVELS  # the float32 map v / 255
    q64 = q.to(torch.float64)
    conf = torch.maximum(q64, 1.0 - q64) if top_label else q64
    key = cell_index(conf, n_cells).to(torch.int64).mul_(2)
    key += conf_above_edge(q, n_bins, top_label=top_label, precision=torch.float32)
    pos = (q >= threshold).to(torch.int64)
    label = torch.tensor([0, 1])
    full = (key * 4 + pos * 2)[:, None] + label  # (256, 2)
    y = label.to(torch.float64)
    gap = (q64[:, None] - y).square()
    qc = q64.clamp(NLL_EPS, 1.0 - NLL_EPS)[:, None]
    nll = (2.0 * qc - 1.0).mul(y).add(1.0 - qc).log().neg()  # as _brier_nll (same roundings)
    return full.reshape(-1), conf[:, None].expand(256, 2).reshape(-1), gap.reshape(-1), \
        nll.reshape(-1)  # fmt: skip


def code_statistics(
    preds: Tensor, target: Tensor, options: CalibrationOptions, rows: int
) -> CellStatistics:
    """:func:`cell_statistics` of 8-bit maps from the joint histogram of (value, label).

    A uint8 value v is the probability ``float32(v) / 255``. With hard 0/1 targets every pixel
    of a code (v, label) has the same key, confidence, Brier and NLL terms, so the 512 code
    counts give every sum: counts exactly as the float32 maps ``v / 255`` would (same key
    arithmetic, :func:`_code_table`), float64 sums as count x term (relative ~1e-15 from the
    per-pixel sums). One histogram pass over the pixels (numba on the CPU, ``bincount``
    elsewhere).

    Args:
        preds: ``(rows, P)`` uint8 maps (see :func:`codes_eligible`).
        target: ``(rows, P)`` 0/1 targets, bool or integer dtype.
        options: parsed options.
        rows: number of rows.

    Returns:
        The chunk's :class:`CellStatistics` (``invalid``: targets outside [0, 1], counted
        by the numba kernel only).
    """
    n_cells = cell_resolution(options.n_bins, options.fine_bins)
    top_label = options.confidence is Confidence.TOP_LABEL
    if preds.device.type == "cpu" and fused_available():
        counts, invalid = fused_codes(preds, target)
        counts = counts.reshape(rows, 512)
    else:
        label = target if target.dtype == torch.bool else target >= 1
        code = preds.to(torch.int64).mul_(2).add_(label)
        code, n_codes = _row_keys(code, 512)
        counts, invalid = cell_histogram(code, n_codes).view(rows, 512), 0
    table = [x.to(preds.device) for x in _code_table(
        options.n_bins, n_cells, top_label, float(options.threshold))]  # fmt: skip
    full, conf, gap, nll = table
    n_keys = 8 * (n_cells + 1)
    count = counts.new_zeros(rows, n_keys).index_add_(1, full, counts)
    conf_sum = counts.new_zeros(rows, n_keys).index_add_(1, full, counts * conf)
    cells, correct = _hard_cells(
        count.view(rows, n_cells + 1, 2, 2, 2),
        pair_sum(pair_sum(conf_sum.view(rows, n_cells + 1, 2, 2, 2))),
        top_label,
    )
    sums = torch.stack([correct, counts @ gap, counts @ nll])
    return CellStatistics(cells, sums, invalid)


def regroup(stats: CellStatistics, options: CalibrationOptions) -> ChunkStatistics:
    """Step 4: equal-width and fine-bin sums from (cell, above-edge) sums."""
    n_cells = stats.cells[0].shape[1] - 1
    table = cell_bins(options.n_bins, n_cells, device=stats.sums.device)
    coarse = tuple(cells_to_bins(c, table, options.n_bins) for c in stats.cells)
    fine = tuple(cells_to_fine(pair_sum(c), options.fine_bins) for c in stats.cells)
    return ChunkStatistics(coarse, fine, torch.cat([coarse[0].sum(-1)[None], stats.sums]))


def chunk_statistics(
    preds: Tensor, target: Tensor, options: CalibrationOptions, rows: int
) -> ChunkStatistics:
    """Bin histograms and sums of a chunk of pixels laid out as ``rows`` rows.

    Args:
        preds: ``(rows, P)`` probabilities or logits, original dtype.
        target: ``(rows, P)`` targets, any dtype.
        options: parsed options.
        rows: number of rows (images in per-image mode, 1 when pooled).

    Returns:
        The chunk's :class:`ChunkStatistics`.
    """
    return regroup(cell_statistics(preds, target, options, rows), options)
