"""Deprecated (0.2): moved to :mod:`densecal.methods.segmentation.objectives` and
:mod:`densecal.methods.registry`."""

from densecal._deprecated import moved_names

_MOVED = moved_names(__name__, dict.fromkeys(
    ("METHODS", "MethodLoss", "method_names"), "densecal.methods.registry"),
    default="densecal.methods.segmentation.objectives")
_OLD_NAMES = {"OBJECTIVES": "METHODS", "Objective": "MethodLoss"}


def __getattr__(name: str) -> object:
    """0.1's ``OBJECTIVES`` is the one registry ``METHODS``; ``Objective`` is ``MethodLoss``."""
    return _MOVED(_OLD_NAMES.get(name, name))
