"""Functional forms of densecal's metrics (plain functions on tensors, no state)."""

from __future__ import annotations

from densecal.metrics.functional.calibration import (
    Aggregate,
    Confidence,
    InputKind,
    TargetType,
    Task,
    pixel_calibration,
    reliability_bins,
)
from densecal.metrics.functional.multilabel import mean_average_precision, multilabel_metrics
from densecal.metrics.functional.segmentation import dice_iou
from densecal.metrics.functional.stochastic import (
    flip_frequencies,
    generalized_energy_distance,
    hungarian_matched_iou,
    sample_diversity,
)

__all__ = [
    "Aggregate",
    "Confidence",
    "InputKind",
    "TargetType",
    "Task",
    "dice_iou",
    "flip_frequencies",
    "generalized_energy_distance",
    "hungarian_matched_iou",
    "mean_average_precision",
    "multilabel_metrics",
    "pixel_calibration",
    "reliability_bins",
    "sample_diversity",
]
