"""Deprecated (0.2): moved to :mod:`densecal.data.synthetic.demo`."""

from densecal._deprecated import moved_module

__getattr__ = moved_module(__name__, "densecal.data.synthetic.demo")
