"""Option enums and argument validation shared by the pixel calibration metrics.

Options are ``str`` enums (MONAI style): users pass plain strings such as ``"top-label"`` and the
code compares against enum members. Every parsing failure raises
:class:`~densecal.errors.DensecalInputError` with a one-line message naming the argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from densecal._checks import E, check_bool, check_int, check_number, parse_choice
from densecal.errors import input_error
from densecal.types import Task

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


_COUNT = "expected an integer >= 1"
MAX_BINS = 100_000
"""Most equal-width bins (``n_bins``); a state holds a few float64 sums per bin."""
MAX_FINE_BINS = 1 << 24
"""Most fine bins behind ACE (128 MiB of float64 sums per statistic at the limit)."""


def _count(name: str, value: object, most: int) -> int:
    """A bin count in ``[1, most]`` (a larger one would allocate more memory than it is worth)."""
    count = check_int(name, value, low=1, problem=_COUNT)
    if count > most:
        raise input_error(name, f"expected at most {most} bins, got {count}")
    return count


def _parse_enum(name: str, value: object, enum: type[E]) -> E:
    """``enum(value)``, in the metrics' wording of :func:`~densecal._checks.parse_choice`."""
    return parse_choice(enum, value, name, problem="expected one of")


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
    check_number("threshold", threshold, 0.0, 1.0, problem="expected a number in [0, 1]")
    if ignore_index is not None:
        check_number("ignore_index", ignore_index, problem="expected None or a finite number")
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
        n_bins=_count("n_bins", n_bins, MAX_BINS),
        input=_parse_enum("input", input, InputKind),
        confidence=parsed_confidence,
        aggregate=_parse_enum("aggregate", aggregate, Aggregate),
        target_type=_parse_enum("target_type", target_type, TargetType),
        threshold=float(threshold),
        ignore_index=None if ignore_index is None else float(ignore_index),
        fine_bins=_count("fine_bins", fine_bins, MAX_FINE_BINS),
        task=parsed_task,
        num_classes=classes,
        include_background=include_background,
    )


def _parse_classes(task: Task, num_classes: object, include_background: object) -> int | None:
    """Check ``num_classes`` / ``include_background`` against the task; returns num_classes."""
    check_bool("include_background", include_background)
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
    return check_int("num_classes", num_classes, low=low,
                     problem=f"task={task.value!r} needs an integer >= {low}")
