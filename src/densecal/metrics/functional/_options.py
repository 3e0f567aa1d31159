"""Option enums and argument validation shared by the pixel calibration metrics.

Options are ``str`` enums (MONAI style): users pass plain strings such as ``"top-label"`` and the
code compares against enum members. Every parsing failure raises
:class:`~densecal.errors.DensecalInputError` with a one-line message naming the argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from densecal.errors import input_error

__all__ = [
    "Aggregate",
    "CalibrationOptions",
    "Confidence",
    "InputKind",
    "TargetType",
    "Task",
    "parse_options",
]


class Confidence(str, Enum):
    """Which confidence is binned.

    ``TOP_LABEL``: c = max(q, 1 - q) against the correctness of the thresholded prediction
    (ASLP's protocol, Guo et al. 2017's top-label ECE). ``POSITIVE``: c = q against the frequency
    of y = 1 (torchmetrics' ``BinaryCalibrationError`` convention).
    """

    TOP_LABEL = "top-label"
    POSITIVE = "positive"


class Aggregate(str, Enum):
    """How pixels of different images are combined.

    ``POOLED``: one histogram over every pixel of the dataset (ASLP). ``PER_IMAGE``: each metric
    computed per image, then averaged over images (MONAI's convention).
    """

    POOLED = "pooled"
    PER_IMAGE = "per-image"


class TargetType(str, Enum):
    """How a target value y in [0, 1] defines correctness.

    ``HARD``: y is binarised as 1[y >= 0.5]. ``SOFT``: expected correctness
    y * 1[pred] + (1 - y) * 1[not pred] (positive mode: frequency y). ``STRICT``: the ASLP
    evaluation code's raw-GT rule; only pixels with y exactly 0 or 1 can be correct (positive
    mode: y counts as positive only when exactly 1).
    """

    HARD = "hard"
    SOFT = "soft"
    STRICT = "strict"


class InputKind(str, Enum):
    """What ``preds`` holds: foreground probabilities in [0, 1] or raw logits (sigmoid applied)."""

    PROBS = "probs"
    LOGITS = "logits"


class Task(str, Enum):
    """What the maps classify (torchmetrics' ``task`` argument).

    ``BINARY``: one foreground probability per pixel. ``MULTICLASS``: ``C`` channels that sum to
    1 per pixel (softmax; exactly one class is true). ``MULTILABEL``: ``C`` independent
    foreground probabilities per pixel (sigmoids; any subset of classes may be true).
    """

    BINARY = "binary"
    MULTICLASS = "multiclass"
    MULTILABEL = "multilabel"


_E = TypeVar("_E", bound=Enum)


def _parse_enum(name: str, value: object, enum: type[_E]) -> _E:
    """Return ``enum(value)`` or raise a one-line DensecalInputError naming ``name``."""
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum)
        raise input_error(name, f"expected one of {allowed}, got {value!r}") from None


@dataclass(frozen=True)
class CalibrationOptions:
    """Validated options of the pixel calibration metrics (see ``pixel_calibration``)."""

    n_bins: int
    input: InputKind
    confidence: Confidence
    aggregate: Aggregate
    target_type: TargetType
    threshold: float
    ignore_index: float | None
    fine_bins: int
    task: Task = Task.BINARY
    num_classes: int | None = None
    include_background: bool = True


def _parse_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise input_error(name, f"expected an integer >= 1, got {value!r}")
    return value


def parse_options(
    *,
    n_bins: int,
    input: str,
    confidence: str,
    aggregate: str,
    target_type: str,
    threshold: float,
    ignore_index: float | None,
    fine_bins: int,
    task: str = "binary",
    num_classes: int | None = None,
    include_background: bool = True,
) -> CalibrationOptions:
    """Validate user options and convert strings to enums.

    ``num_classes`` is required (and only allowed) with ``task="multiclass"`` (>= 2) or
    ``"multilabel"`` (>= 1, >= 2 without the background); ``include_background=False`` and
    ``task="multiclass"`` with ``confidence="positive"`` are refused for the tasks where they
    mean nothing (the class-wise keys are the positive-mode metrics of multi-class maps).

    Raises:
        DensecalInputError: an option has a bad type or value; the message names it.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise input_error("threshold", f"expected a number in [0, 1], got {threshold!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise input_error("threshold", f"expected a number in [0, 1], got {threshold!r}")
    if ignore_index is not None and (
        isinstance(ignore_index, bool)
        or not isinstance(ignore_index, (int, float))
        or not math.isfinite(ignore_index)
    ):
        raise input_error("ignore_index", f"expected None or a finite number, got {ignore_index!r}")
    parsed_task = _parse_enum("task", task, Task)
    classes = _parse_classes(parsed_task, num_classes, include_background)
    parsed_confidence = _parse_enum("confidence", confidence, Confidence)
    if parsed_task is Task.MULTICLASS and parsed_confidence is not Confidence.TOP_LABEL:
        raise input_error(
            "confidence",
            "task='multiclass' bins the top-label confidence only; the positive-mode "
            "calibration of each class is in the 'ece_class' / 'marginal_ece' keys",
        )
    return CalibrationOptions(
        n_bins=_parse_count("n_bins", n_bins),
        input=_parse_enum("input", input, InputKind),
        confidence=parsed_confidence,
        aggregate=_parse_enum("aggregate", aggregate, Aggregate),
        target_type=_parse_enum("target_type", target_type, TargetType),
        threshold=float(threshold),
        ignore_index=None if ignore_index is None else float(ignore_index),
        fine_bins=_parse_count("fine_bins", fine_bins),
        task=parsed_task,
        num_classes=classes,
        include_background=include_background,
    )


def _parse_classes(task: Task, num_classes: object, include_background: object) -> int | None:
    """Check ``num_classes`` / ``include_background`` against the task; returns num_classes."""
    if not isinstance(include_background, bool):
        raise input_error(
            "include_background", f"expected True or False, got {include_background!r}"
        )
    if task is Task.BINARY:
        if num_classes is not None:
            raise input_error(
                "num_classes", "only used with task='multiclass' or 'multilabel'; leave it None"
            )
        if not include_background:
            raise input_error(
                "include_background", "only used with task='multiclass' or 'multilabel'"
            )
        return None
    low = 2 if task is Task.MULTICLASS or not include_background else 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < low:
        raise input_error(
            "num_classes",
            f"task={task.value!r} needs an integer >= {low}, got {num_classes!r}",
        )
    return num_classes
