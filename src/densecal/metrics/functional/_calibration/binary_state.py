"""Top-label state of the pixel calibration metrics: sufficient statistics and their compute.

The state holds per-bin sums (count, confidence sum, accuracy sum) in float64, a fine histogram
for the equal-mass bins, scalar sums and per-image running sums; every field adds, so batches and
DDP ranks merge by ``sum``. The batch updates that fill it are in
:mod:`densecal.metrics.functional.calibration` (binary maps) and ``_classwise`` (C-channel
maps); :func:`binary_compute` turns a state into metrics.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from densecal.metrics.functional._calibration.binary_kernel import ChunkStatistics
from densecal.metrics.functional._calibration.binning import (
    bin_edges,
    equal_mass_ace,
    uniform_bin_errors,
)
from densecal.metrics.functional._calibration.failure import FAILURE_KEYS, failure_detection
from densecal.metrics.functional._calibration.options import Aggregate, Confidence

__all__ = ["METRIC_KEYS", "CalibrationState", "bin_table"]

METRIC_KEYS = ("ece", "mce", "oe", "ace", "brier", "nll", "accuracy")
"""Keys of the dict returned by :func:`pixel_calibration`, in this order."""


class CalibrationState(NamedTuple):
    """Sufficient statistics of the calibration metrics; every field adds (``sum`` reduce).

    Attributes:
        bin_count: ``(n_bins,)`` pixels per equal-width bin.
        bin_conf: ``(n_bins,)`` sum of confidences per bin.
        bin_acc: ``(n_bins,)`` sum of correctness (top-label) or of positives (positive mode).
        fine_count: ``(fine_bins,)`` pixels per fine bin (for equal-mass bins / ACE).
        fine_conf: ``(fine_bins,)`` sum of confidences per fine bin.
        fine_acc: ``(fine_bins,)`` sum of correctness / positives per fine bin.
        count: ``()`` number of pixels (ignored pixels excluded).
        correct: ``()`` sum of top-label correctness at ``threshold``.
        brier: ``()`` sum of (q - y)^2.
        nll: ``()`` sum of BCE(q, y).
        image_sums: ``(7,)`` sums over images of each image's metrics, in ``METRIC_KEYS``
            order (per-image aggregation only; zeros otherwise).
        image_count: ``()`` number of images with at least one pixel (per-image only).

    All tensors are float64.
    """

    bin_count: Tensor
    bin_conf: Tensor
    bin_acc: Tensor
    fine_count: Tensor
    fine_conf: Tensor
    fine_acc: Tensor
    count: Tensor
    correct: Tensor
    brier: Tensor
    nll: Tensor
    image_sums: Tensor
    image_count: Tensor

    @staticmethod
    def zeros(n_bins: int, fine_bins: int, device: torch.device | None = None) -> CalibrationState:
        """An empty state (the identity of addition)."""

        def z(*shape: int) -> Tensor:
            return torch.zeros(shape, dtype=torch.float64, device=device)

        return CalibrationState(
            z(n_bins), z(n_bins), z(n_bins), z(fine_bins), z(fine_bins), z(fine_bins),
            z(), z(), z(), z(), z(len(METRIC_KEYS)), z(),
        )  # fmt: skip


def image_metrics(part: ChunkStatistics, n_bins: int) -> tuple[Tensor, Tensor]:
    """Sum over the rows (images) of each image's metrics, and the number of non-empty images."""
    n_pix, correct, brier, nll = part.sums
    errs = uniform_bin_errors(*part.coarse)
    ace = equal_mass_ace(*part.fine, n_bins)
    per = torch.stack(
        [errs["ece"], errs["mce"], errs["oe"], ace, brier / n_pix, nll / n_pix, correct / n_pix],
        dim=-1,
    )
    present = n_pix > 0
    return torch.where(present.unsqueeze(-1), per, 0.0).sum(0), present.sum().to(torch.float64)


def add_part(state: CalibrationState, part: ChunkStatistics) -> None:
    """Add a chunk's bin sums (summed over its rows) into ``state`` in place."""
    for acc, new in zip(state[:6], (*part.coarse, *part.fine), strict=True):
        acc.add_(new.sum(0))
    for acc, new in zip(state[6:10], part.sums.sum(-1), strict=True):
        acc.add_(new)


def binary_compute(state: CalibrationState, aggregate: Aggregate,
                   confidence: Confidence = Confidence.TOP_LABEL, *,
                   failure: bool = True) -> dict[str, Tensor]:
    """Metrics from accumulated statistics (NaN when no pixel was seen).

    Pooled: ECE/MCE/OE from the equal-width bins, ACE from the fine histogram regrouped into
    ``n_bins`` equal-mass bins (``n_bins`` = length of ``state.bin_count``), Brier/NLL/accuracy
    as pixel means. Per-image: mean over images of each image's values. Then the failure-
    detection keys ``aurc, eaurc, auroc, fpr95`` from the pooled fine histogram
    (:func:`~densecal.metrics.functional._calibration.failure.failure_detection`; always pooled,
    NaN for the ``positive`` confidence, which does not rank correctness); ``failure=False``
    leaves them out (per-image rows that never report them).
    """
    out = _calibration_keys(state, aggregate)
    if not failure:
        return out
    if confidence is Confidence.TOP_LABEL:
        found = failure_detection(state.fine_count.cpu().numpy(), state.fine_acc.cpu().numpy())
    else:
        found = dict.fromkeys(FAILURE_KEYS, float("nan"))
    for key in FAILURE_KEYS:
        out[key] = torch.tensor(found[key], dtype=torch.float64, device=state.count.device)
    return out


def _calibration_keys(state: CalibrationState, aggregate: Aggregate) -> dict[str, Tensor]:
    if aggregate is Aggregate.PER_IMAGE:
        means = state.image_sums / state.image_count
        return {k: means[i] for i, k in enumerate(METRIC_KEYS)}
    n_bins = state.bin_count.shape[0]
    errs = uniform_bin_errors(state.bin_count[None], state.bin_conf[None], state.bin_acc[None])
    fine = (state.fine_count[None], state.fine_conf[None], state.fine_acc[None])
    ace = equal_mass_ace(*fine, n_bins)
    n = state.count
    return {
        "ece": errs["ece"][0],
        "mce": errs["mce"][0],
        "oe": errs["oe"][0],
        "ace": ace[0],
        "brier": state.brier / n,
        "nll": state.nll / n,
        "accuracy": state.correct / n,
    }


def bin_table(count: Tensor, conf_sum: Tensor, acc_sum: Tensor) -> dict[str, Tensor]:
    """Reliability table of equal-width bin sums ``(..., n_bins)`` (NaN means in empty bins)."""
    edges = bin_edges(count.shape[-1], device=count.device)
    empty = torch.full_like(count, float("nan"))
    return {
        "bin_lower": edges[:-1],
        "bin_upper": edges[1:],
        "count": count,
        "confidence": torch.where(count > 0, conf_sum / count, empty),
        "accuracy": torch.where(count > 0, acc_sum / count, empty),
    }


def binary_reliability(state: CalibrationState) -> dict[str, Tensor]:
    """Per-bin table of the pooled equal-width bins (NaN confidence/accuracy when empty)."""
    return bin_table(state.bin_count, state.bin_conf, state.bin_acc)
