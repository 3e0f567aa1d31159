"""Segmentation objectives: one LightningModule for every pixel loss (:mod:`~.module`), the
objectives by method name (:mod:`~.objectives`), training (:mod:`~.training`) and inference
(:mod:`~.inference`)."""

from __future__ import annotations

from densecal.methods.segmentation.inference import (
    load_module,
    predict_class_probabilities,
    predict_images,
    predict_logits,
)
from densecal.methods.segmentation.module import BinarySegmentationModule, SegmentationModule
from densecal.methods.segmentation.objectives import build_objective, is_multiclass

__all__ = [
    "BinarySegmentationModule",
    "SegmentationModule",
    "build_objective",
    "is_multiclass",
    "load_module",
    "predict_class_probabilities",
    "predict_images",
    "predict_logits",
]
