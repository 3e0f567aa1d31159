"""Functional forms of densecal's metrics (plain functions on tensors, no state)."""

from __future__ import annotations

from densecal.metrics.functional._options import (
    Aggregate,
    Confidence,
    InputKind,
    TargetType,
    Task,
)
from densecal.metrics.functional.calibration import pixel_calibration, reliability_bins

__all__ = [
    "Aggregate",
    "Confidence",
    "InputKind",
    "TargetType",
    "Task",
    "pixel_calibration",
    "reliability_bins",
]
