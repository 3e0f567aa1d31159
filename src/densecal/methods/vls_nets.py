"""Deprecated (0.2): moved to :mod:`densecal.methods.vls.nets` and :mod:`densecal.losses`."""

from densecal._deprecated import moved_names

__getattr__ = moved_names(__name__, dict.fromkeys(
    ("one_hot_labels", "soft_label_kl", "SoftLabelKLLoss"), "densecal.losses.soft_label"),
    default="densecal.methods.vls.nets")
