"""Deprecated (0.2): moved to :mod:`densecal.methods.segmentation.objectives` and
:mod:`densecal.methods.registry` (``OBJECTIVES`` is the one registry ``METHODS``, ``Objective``
is ``MethodLoss``)."""

from densecal._deprecated import moved_names

__getattr__ = moved_names(
    __name__,
    dict.fromkeys(("METHODS", "MethodLoss", "method_names", "OBJECTIVES", "Objective"),
                  "densecal.methods.registry"),
    default="densecal.methods.segmentation.objectives",
    renamed={"OBJECTIVES": "METHODS", "Objective": "MethodLoss"})
