"""Deprecated (0.2): moved to :mod:`densecal.data.synthetic.finegrained`."""

from densecal._deprecated import moved_module

__getattr__ = moved_module(__name__, "densecal.data.synthetic.finegrained")
