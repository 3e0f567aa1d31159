"""The vocabulary shared by every package: what a map classifies, and how losses reduce.

Every string a user can type has one ``str`` enum (MONAI's ``utils/enums.py`` pattern; plain
strings are accepted wherever a member is, and compare equal to it). The enums of one package
only (ASLP's ``Technique``, the metrics' ``Confidence``) live with that package; the ones every
layer speaks live here.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "DENSE_LOSS_TASKS",
    "Protocol",
    "Reduction",
    "StrEnum",
    "Task",
]


class StrEnum(str, Enum):
    """A ``str`` enum whose ``str()`` is its value (``enum.StrEnum`` of Python 3.11, kept here
    for 3.10): members compare equal to, and print as, the strings users type."""

    def __str__(self) -> str:
        return self.value


class Task(StrEnum):
    """What a map classifies (torchmetrics' ``task`` argument).

    ``BINARY``: one foreground probability per pixel (a sigmoid of one logit). ``MULTICLASS``:
    ``C`` channels that sum to 1 per pixel (softmax; exactly one class is true). ``MULTILABEL``:
    ``C`` independent foreground probabilities per pixel (sigmoids; any subset may be true).
    """

    BINARY = "binary"
    MULTICLASS = "multiclass"
    MULTILABEL = "multilabel"


#: The tasks of the dense losses, of temperature scaling and of training: one distribution per
#: pixel (a multi-label map is ``C`` binary maps).
DENSE_LOSS_TASKS = frozenset({Task.BINARY, Task.MULTICLASS})


class Reduction(StrEnum):
    """How per-pixel losses become the returned loss (torch's ``reduction`` argument).

    ``MEAN`` over the non-ignored pixels (0 when every pixel is ignored), ``SUM``, or ``NONE``
    (the per-pixel map, ignored pixels 0).
    """

    MEAN = "mean"
    SUM = "sum"
    NONE = "none"


class Protocol(StrEnum):
    """How saved maps are scored (``densecal evaluate --protocol``).

    ``RAW``: the model's probabilities as they are. ``OFFICIAL``: the ASLP reference code's
    evaluation (per-map min-max normalisation, 8-bit quantisation, raw-truth correctness, the
    MATLAB-compatible SOD measures; ``docs/methods.md`` section 1.3).
    """

    RAW = "raw"
    OFFICIAL = "official"
