"""Binary segmentation accuracy of one map: Dice and IoU at a fixed threshold, and the input
checks the SOD measures share (:class:`densecal.metrics.SODMetrics` is the streaming form)."""

from __future__ import annotations

from typing import Any

import numpy as np

from densecal.errors import input_error

__all__ = ["as_map", "binary_dice_iou", "check_pair", "check_threshold", "dice_iou"]


def as_map(x: Any, name: str) -> np.ndarray:
    """Return ``x`` as a float64 ``(H, W)`` array with finite values in [0, 1], or raise."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise input_error(name, f"cannot be read as a numeric array ({exc})") from None
    if arr.ndim != 2:
        raise input_error(name, f"expected a 2-D (H, W) map, got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise input_error(name, "is empty")
    if not np.isfinite(arr).all():
        raise input_error(name, "contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise input_error(name, f"values must lie in [0, 1], got range [{lo:g}, {hi:g}]")
    return arr


def check_pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` and ``gt`` as float64 maps of one shape (see :func:`as_map`)."""
    p = as_map(pred, "pred")
    g = as_map(gt, "gt")
    if p.shape != g.shape:
        raise input_error("pred", f"shape {p.shape} does not match gt shape {g.shape}")
    return p, g


def check_threshold(threshold: float) -> float:
    """A decision threshold in ``(0, 1]``; raises ``DensecalInputError`` otherwise."""
    t = float(threshold)
    if not (0.0 < t <= 1.0):
        raise input_error("threshold", f"must lie in (0, 1], got {threshold!r}")
    return t


def binary_dice_iou(pred_fg: np.ndarray, gt_fg: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two boolean masks; both empty counts as perfect agreement (1.0, 1.0)."""
    inter = int(np.count_nonzero(pred_fg & gt_fg))
    n_pred = int(np.count_nonzero(pred_fg))
    n_gt = int(np.count_nonzero(gt_fg))
    if n_pred + n_gt == 0:
        return 1.0, 1.0
    union = n_pred + n_gt - inter
    return 2.0 * inter / (n_pred + n_gt), inter / union


def dice_iou(pred: Any, gt: Any, threshold: float = 0.5) -> tuple[float, float]:
    """Dice and IoU of one binary map at a fixed threshold.

    Dice = 2|P ∩ G| / (|P| + |G|), IoU = |P ∩ G| / |P ∪ G| with P = 1[pred >= threshold] and
    G = 1[gt >= 0.5] (Sørensen–Dice; Jaccard). Convention: when both P and G are empty (an
    out-of-distribution image with an all-zero mask predicted empty) both are 1.0 — the
    prediction is perfect; an empty P against a non-empty G (or vice versa) gives 0.0.

    Args:
        pred: predicted foreground probabilities, shape ``(H, W)``, values in [0, 1].
        gt: ground truth, shape ``(H, W)``, values in [0, 1] (soft masks are binarised at 0.5).
        threshold: decision threshold in (0, 1].

    Returns:
        ``(dice, iou)`` as Python floats in [0, 1].

    Raises:
        DensecalInputError: on shape mismatch, non-2-D input, NaN/inf, values outside [0, 1] or a
            threshold outside (0, 1].

    Example:
        >>> import numpy as np
        >>> dice_iou(np.array([[0.9, 0.6], [0.2, 0.0]]), np.array([[1.0, 0.0], [0.0, 0.0]]))
        (0.6666666666666666, 0.5)
    """
    t = check_threshold(threshold)
    p, g = check_pair(pred, gt)
    return binary_dice_iou(p >= t, g >= 0.5)
