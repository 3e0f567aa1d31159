"""Deprecated (0.2): moved to :mod:`densecal.methods.segmentation.inference`."""

from densecal._deprecated import moved_module

__getattr__ = moved_module(__name__, "densecal.methods.segmentation.inference")
