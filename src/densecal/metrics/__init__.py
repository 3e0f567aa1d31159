"""Metrics: calibration as torchmetrics ``Metric`` subclasses (functional twins in
``densecal.metrics.functional``) and SOD / segmentation accuracy through pysodmetrics."""

from __future__ import annotations

from densecal.metrics.calibration import PixelCalibration
from densecal.metrics.segmentation import SOD_KEYS, SODMetrics, dice_iou

__all__ = ["SOD_KEYS", "PixelCalibration", "SODMetrics", "dice_iou"]
