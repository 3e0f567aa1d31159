"""Deprecated (0.2): moved to :mod:`densecal.methods.segmentation.module`."""

from densecal._deprecated import moved_names

__getattr__ = moved_names(__name__, {"adam_schedule": "densecal.methods.engine.optim"},
                          default="densecal.methods.segmentation.module")
