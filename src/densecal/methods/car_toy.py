"""Deprecated (0.2): moved to :mod:`densecal.methods.car.toy`."""

from densecal._deprecated import moved_module

__getattr__ = moved_module(__name__, "densecal.methods.car.toy")
