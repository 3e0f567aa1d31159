"""Metrics as torchmetrics ``Metric`` classes (constant-memory, DDP-summable states); their
functional twins are in :mod:`densecal.metrics.functional`. SOD / segmentation accuracy goes
through pysodmetrics."""

from __future__ import annotations

from densecal.metrics.calibration import PixelCalibration
from densecal.metrics.multilabel import MultilabelMetrics
from densecal.metrics.segmentation import SOD_KEYS, SODMetrics, dice_iou
from densecal.metrics.stochastic import StochasticSegmentationMetrics

__all__ = [
    "SOD_KEYS",
    "MultilabelMetrics",
    "PixelCalibration",
    "SODMetrics",
    "StochasticSegmentationMetrics",
    "dice_iou",
]
