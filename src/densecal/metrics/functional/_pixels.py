"""Per-pixel kernel of the calibration metrics: input checks and one chunk's sufficient sums.

``chunk_statistics`` turns a chunk of maps into per-row histograms and sums (rows = images in
per-image mode, one row when pooled). The caller walks a batch in chunks of bounded size so the
float64 temporaries stay small (cache-resident on CPU) and peak memory does not grow with the
batch.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from densecal.errors import input_error
from densecal.metrics.functional._binning import bin_index, fine_index, row_histogram
from densecal.metrics.functional._options import (
    CalibrationOptions,
    Confidence,
    InputKind,
    TargetType,
)

__all__ = ["ChunkStatistics", "chunk_statistics", "match_shapes", "validate_values"]

NLL_EPS = 1e-7
"""Probabilities are clamped to [NLL_EPS, 1 - NLL_EPS] for the NLL (as in the ASLP code)."""


def match_shapes(preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Check dtypes/devices and bring ``(N, 1, *S)`` / ``(N, *S)`` pairs to ``(N, P)``.

    Raises:
        DensecalInputError: preds not floating point, devices differ, or shapes mismatch.
    """
    if not torch.is_tensor(preds) or not preds.is_floating_point():
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
    t = target.to(torch.uint8) if target.dtype == torch.bool else target
    if options.ignore_index is not None:
        t = torch.where(t == options.ignore_index, torch.zeros_like(t[:1, :1]), t)
    p_min, p_max, t_min, t_max = torch.stack(
        [preds.amin().double(), preds.amax().double(), t.amin().double(), t.amax().double()]
    ).tolist()
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


def _positive_frequency(y: Tensor, target_type: TargetType) -> Tensor:
    """Indicator (or probability) that a pixel is foreground, per target type."""
    if target_type is TargetType.HARD:
        return (y >= 0.5).double()
    if target_type is TargetType.SOFT:
        return y
    return (y == 1.0).double()


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


def chunk_statistics(
    preds: Tensor, target: Tensor, options: CalibrationOptions, rows: int
) -> ChunkStatistics:
    """Histograms and sums of a chunk of pixels laid out as ``rows`` rows.

    Args:
        preds: ``(rows, P)`` probabilities or logits, original dtype.
        target: ``(rows, P)`` targets, any dtype.
        options: parsed options.
        rows: number of rows (images in per-image mode, 1 when pooled).

    Returns:
        The chunk's :class:`ChunkStatistics`.
    """
    if options.input is InputKind.LOGITS:
        q, precision = torch.sigmoid(preds.to(torch.float64)), torch.float64
    else:
        q, precision = preds.to(torch.float64), preds.dtype
    y = target.to(torch.float64)
    weight = None
    if options.ignore_index is not None:
        valid = y != options.ignore_index
        y = torch.where(valid, y, 0.0)
        weight = valid.to(torch.float64)

    pos = q >= options.threshold
    correct = _correctness(pos, y, options.target_type)
    top_label = options.confidence is Confidence.TOP_LABEL
    if top_label:
        conf, acc = torch.maximum(q, 1.0 - q), correct
    else:
        conf, acc = q, _positive_frequency(y, options.target_type)
    qc = q.clamp(NLL_EPS, 1.0 - NLL_EPS)
    brier = (q - y).square_()
    nll = torch.lerp(qc.log(), (1.0 - qc).log_(), 1.0 - y).neg_()  # -(y log q + (1-y) log(1-q))
    if weight is not None:
        acc, correct = acc * weight, correct * weight
        brier, nll = brier.mul_(weight), nll.mul_(weight)
    conf_w = conf if weight is None else conf * weight

    index = bin_index(q, options.n_bins, top_label=top_label, precision=precision)
    weights = (weight, conf_w, acc)
    coarse = row_histogram(index, options.n_bins, weights)
    fine = row_histogram(fine_index(conf, options.fine_bins), options.fine_bins, weights)
    sums = torch.stack([coarse[0].sum(-1), correct.sum(-1), brier.sum(-1), nll.sum(-1)])
    return ChunkStatistics(coarse, fine, sums)
