"""How ``densecal evaluate`` scores maps: the options of binary and of K-class evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from densecal._checks import parse_choice
from densecal.errors import input_error
from densecal.metrics.functional.calibration import MAX_BINS
from densecal.types import Protocol, StrEnum

__all__ = ["PROTOCOLS", "EvaluationOptions", "Measures", "MulticlassOptions"]


class Measures(StrEnum):
    """Which measures ``densecal evaluate`` computes (``--measures``).

    ``ALL``: calibration and the SOD accuracy measures. ``CALIBRATION``: calibration only; the
    S/E/F-measures (most of the time on saved maps) are skipped and written as ``null``.
    """

    ALL = "all"
    CALIBRATION = "calibration"

PROTOCOLS = tuple(p.value for p in Protocol)


@dataclass(frozen=True)
class EvaluationOptions:
    """How maps are scored (each a named option of ``densecal evaluate``).

    Attributes:
        n_bins: equal-width confidence bins on [0, 1], right-closed.
        confidence: ``top-label`` (c = max(q, 1 − q)) or ``positive`` (c = q).
        aggregate: ``pooled`` (one histogram over every pixel) or ``per-image`` (mean of
            per-image values).
        protocol: ``raw`` or ``official`` (see the module docstring).
        threshold: foreground decision threshold on q.
        target: ``hard`` or ``soft`` ground truth (the ``official`` protocol uses ``strict``).
        measures: ``all`` or ``calibration`` (:class:`Measures`).
    """

    n_bins: int = 10
    confidence: str = "top-label"
    aggregate: str = "pooled"
    protocol: Protocol | str = "raw"
    threshold: float = 0.5
    target: str = "hard"
    measures: Measures | str = "all"

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocol", parse_choice(
            Protocol, self.protocol, "--protocol",
            message="unknown protocol {value}; choose raw or official").value)
        object.__setattr__(self, "measures", parse_choice(
            Measures, self.measures, "--measures",
            message="unknown value {value}; choose all or calibration").value)
        if self.n_bins < 1:
            raise input_error("--n-bins", f"must be at least 1, got {self.n_bins}")
        if self.n_bins > MAX_BINS:
            raise input_error("--n-bins", f"must be at most {MAX_BINS}, got {self.n_bins}")

    @property
    def target_type(self) -> str:
        """The correctness rule actually used (``strict`` under the official protocol)."""
        return "strict" if self.protocol == "official" else self.target

    def metric_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`PixelCalibration` / :func:`pixel_calibration`."""
        return {"n_bins": self.n_bins, "confidence": self.confidence,
                "aggregate": self.aggregate, "threshold": self.threshold,
                "target_type": self.target_type}

    def to_dict(self) -> dict[str, Any]:
        """The ``protocol`` block of ``metrics.json``."""
        return {"n_bins": self.n_bins, "confidence": self.confidence,
                "threshold": self.threshold, "aggregate": self.aggregate,
                "protocol": self.protocol, "target": self.target_type}


@dataclass(frozen=True)
class MulticlassOptions:
    """Scoring options for K-class maps (pooled or per-image calibration, 10 bins by default).

    Attributes:
        num_classes: K >= 2.
        n_bins: equal-width confidence bins on [0, 1].
        aggregate: ``pooled`` or ``per-image`` for the dataset-level calibration (volumes are
            always pooled within the volume).
        ignore_index: label value left out everywhere, or None.
        include_background: False: class 0 left out of the all-pixel top-label metrics,
            class-wise ECE, mean Dice and IoU (MONAI convention).
    """

    num_classes: int
    n_bins: int = 10
    aggregate: str = "pooled"
    ignore_index: int | None = None
    include_background: bool = True

    def metric_kwargs(self, aggregate: str | None = None) -> dict[str, Any]:
        """Keyword arguments of :class:`PixelCalibration` for these options."""
        return {"task": "multiclass", "num_classes": self.num_classes, "n_bins": self.n_bins,
                "aggregate": aggregate or self.aggregate, "ignore_index": self.ignore_index,
                "include_background": self.include_background, "validate_args": False}

    def to_dict(self, soft_truth: bool = False) -> dict[str, Any]:
        """The ``protocol`` block of the result."""
        return {"n_bins": self.n_bins, "confidence": "top-label", "aggregate": self.aggregate,
                "num_classes": self.num_classes, "ignore_index": self.ignore_index,
                "include_background": self.include_background,
                "foreground": "ground-truth label != 0", "volume": "stem before the first '__'",
                "soft_truth": soft_truth, "per_volume_std": "population (ddof=0)"}
