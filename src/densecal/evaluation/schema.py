"""The results ``densecal evaluate`` produces: schemas ``densecal.evaluate/2`` (binary maps) and
``densecal.evaluate-multiclass/3`` (K-class maps), the :class:`Evaluation` that carries one, and
the exact check of the binary schema.

``densecal.evaluate/2`` (every value a fraction in [0, 1], never a percentage; ``/2`` added the
failure-detection keys ``aurc``, ``eaurc``, ``auroc``, ``fpr95`` to ``calibration``)::

    {"schema": "densecal.evaluate/2",
     "dataset": {"name", "n_images", "n_pixels"},
     "protocol": {"n_bins", "confidence", "threshold", "aggregate", "protocol", "target"},
     "calibration": {"ece", "mce", "oe", "ace", "brier", "nll", "accuracy",
                     "aurc", "eaurc", "auroc", "fpr95"},
     "segmentation": {"mae", "max_f", "mean_f", "adaptive_f", "max_e", "mean_e", "s_measure",
                      "weighted_f", "dice", "iou"},
     "reliability": {"bin_lower", "bin_upper", "count", "confidence", "accuracy"}}

``densecal.evaluate-multiclass/3`` is described in :mod:`densecal.evaluation.multiclass`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from densecal._checks import is_int, is_real
from densecal.errors import input_error

__all__ = [
    "EVALUATE_MULTICLASS_SCHEMA",
    "EVALUATE_SCHEMA",
    "EVALUATE_SECTIONS",
    "Evaluation",
    "check_result_values",
    "validate_evaluate_result",
]

EVALUATE_MULTICLASS_SCHEMA = "densecal.evaluate-multiclass/3"
EVALUATE_SCHEMA = "densecal.evaluate/2"

#: Exact key sets of each section of an evaluate result.
EVALUATE_SECTIONS: dict[str, tuple[str, ...]] = {
    "dataset": ("name", "n_images", "n_pixels"),
    "protocol": ("n_bins", "confidence", "threshold", "aggregate", "protocol", "target"),
    "calibration": ("ece", "mce", "oe", "ace", "brier", "nll", "accuracy", "aurc", "eaurc",
                    "auroc", "fpr95"),
    "segmentation": ("mae", "max_f", "mean_f", "adaptive_f", "max_e", "mean_e", "s_measure",
                     "weighted_f", "dice", "iou"),
    "reliability": ("bin_lower", "bin_upper", "count", "confidence", "accuracy"),
}
# Keys allowed above 1: NLL is unbounded (nats per pixel).
_NO_UPPER_BOUND = frozenset({("calibration", "nll")})
_WHERE = "evaluate result"


def _check_keys(d: Any, expected: Sequence[str], prefix: str) -> None:
    if not isinstance(d, Mapping):
        raise input_error(_WHERE, f"{prefix or 'result'} must be a mapping, got "
                                  f"{type(d).__name__}")
    dotted = f"{prefix}." if prefix else ""
    missing = [k for k in expected if k not in d]
    if missing:
        raise input_error(_WHERE, f"missing key '{dotted}{missing[0]}'")
    extra = [k for k in d if k not in expected]
    if extra:
        raise input_error(_WHERE, f"unexpected key '{dotted}{extra[0]}'")


def _is_number(x: Any) -> bool:
    return is_real(x)


def _check_fraction(section: str, key: str, x: Any) -> None:
    if x is None or (_is_number(x) and math.isnan(float(x))):
        return  # undefined value (JSON null)
    if not _is_number(x):
        raise input_error(_WHERE, f"{section}.{key} must be a number, got {type(x).__name__}")
    value = float(x)
    upper = math.inf if (section, key) in _NO_UPPER_BOUND else 1.0
    if not (0.0 <= value <= upper):
        raise input_error(_WHERE, f"{section}.{key} = {value!r} is not a fraction in [0, 1] "
                                  "(values are fractions, not percentages)")


def validate_evaluate_result(d: Mapping[str, Any]) -> None:
    """Check that ``d`` follows schema ``densecal.evaluate/2`` exactly.

    Checks the exact key set of the top level and of every section, the schema string, that
    metric values are numbers (or ``None``/NaN) in [0, 1] (NLL >= 0 without upper bound), and
    that the five reliability lists have one entry per bin.

    Args:
        d: the result dict (as built in memory or read back from ``metrics.json``).

    Raises:
        DensecalInputError: (a ``ValueError``) naming the first missing or unexpected key, or
            the offending value, e.g. ``"evaluate result: missing key 'calibration.ece'"``.
    """
    _check_keys(d, ("schema", *EVALUATE_SECTIONS), "")
    if d["schema"] != EVALUATE_SCHEMA:
        raise input_error(_WHERE, f"schema must be {EVALUATE_SCHEMA!r}, got {d['schema']!r}")
    for section, keys in EVALUATE_SECTIONS.items():
        _check_keys(d[section], keys, section)
    for section in ("calibration", "segmentation"):
        for key, value in d[section].items():
            _check_fraction(section, key, value)
    for key in ("n_images", "n_pixels", "n_bins"):
        section = "protocol" if key == "n_bins" else "dataset"
        value = d[section][key]
        if not (is_int(value) and value >= 0):
            raise input_error(_WHERE, f"{section}.{key} must be a non-negative integer, "
                                      f"got {value!r}")
    rel = d["reliability"]
    n_bins = d["protocol"]["n_bins"]
    for key in EVALUATE_SECTIONS["reliability"]:
        try:
            length = len(rel[key])
        except TypeError:
            raise input_error(_WHERE, f"reliability.{key} must be a list") from None
        if length != n_bins:
            raise input_error(_WHERE, f"reliability.{key} has {length} entries, "
                                      f"protocol.n_bins is {n_bins}")


def check_result_values(d: Mapping[str, Any]) -> None:
    """Check, before anything is written, that every metric value of a result is in range.

    A binary result (``densecal.evaluate/2``) gets :func:`validate_evaluate_result`. In a
    multi-class result (``densecal.evaluate-multiclass/3``) every number in ``calibration``,
    ``segmentation``, ``soft_truth`` and ``per_volume.mean``/``std`` (lists element-wise) must be
    ``None``/NaN or a fraction in [0, 1]; NLL keys only >= 0 and multi-class Brier scores (a sum
    over classes) in [0, 2].

    Raises:
        DensecalInputError: naming the first value out of range.
    """
    if d.get("schema") != EVALUATE_MULTICLASS_SCHEMA:
        validate_evaluate_result(d)
        return
    blocks = [(s, d.get(s)) for s in ("calibration", "segmentation", "soft_truth")]
    volumes = d.get("per_volume") or {}
    blocks += [(f"per_volume.{s}", volumes.get(s)) for s in ("mean", "std")]
    for section, block in blocks:
        for key, value in (block or {}).items():
            for x in value if isinstance(value, list) else [value]:
                if is_real(x):
                    _check_multiclass_value(section, key, float(x))


def _check_multiclass_value(section: str, key: str, x: float) -> None:
    upper = math.inf if "nll" in key else 2.0 if "brier" in key else 1.0
    if not (math.isnan(x) or 0.0 <= x <= upper):
        raise input_error(_WHERE, f"{section}.{key} = {x!r} is out of range [0, {upper}]")


@dataclass
class Evaluation:
    """The outcome of evaluating one dataset: ``result`` (schema ``densecal.evaluate/2``),
    ``per_image`` rows (name plus per-image calibration and accuracy values) and ``seconds``:
    wall-clock time of the whole pass (``total``, from the evaluator's creation, so decoding
    that is not overlapped is included) and of its ``calibration`` and ``segmentation``
    metrics (kept out of ``result``, which stays reproducible)."""

    result: dict[str, Any]
    per_image: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    risk_coverage: dict[str, list[float]] = field(default_factory=dict)
    """The risk-coverage curve behind ``aurc`` (``{"coverage", "risk", "oracle_risk"}``, see
    :meth:`densecal.metrics.PixelCalibration.risk_coverage`); empty when not top-label."""

    def throughput_line(self) -> str:
        """``"N images in T s (R images/s; calibration C s, segmentation S s)"``."""
        n, sec = self.result["dataset"]["n_images"], self.seconds
        total = sec.get("total", 0.0)
        rate = f"{n / total:.1f} images/s" if total > 0 else "n/a images/s"
        return (f"{n} images in {total:.2f} s ({rate}; calibration "
                f"{sec.get('calibration', 0.0):.2f} s, segmentation "
                f"{sec.get('segmentation', 0.0):.2f} s)")
