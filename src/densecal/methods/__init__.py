"""Training methods: the registry of method names, the training engine, and one package or
module per method family, built from the core losses and metrics.

This package imports Lightning; the core packages (losses, metrics, evaluation ...) never do.
"""

from __future__ import annotations

from densecal._deprecated import moved_names
from densecal.methods.config import TrainConfig, load_config, save_config
from densecal.methods.engine.run_folder import last_checkpoint
from densecal.methods.registry import METHODS, method_names
from densecal.methods.segmentation import (
    BinarySegmentationModule,
    SegmentationModule,
    build_objective,
    is_multiclass,
    load_module,
    predict_class_probabilities,
    predict_images,
    predict_logits,
)
from densecal.methods.train import run_started, train
from densecal.methods.vls import (
    ConditionalVAE,
    SoftLabelDataset,
    VLSStage1Module,
    vls_soft_labels,
    write_soft_labels,
)

__all__ = [
    "METHODS",
    "BinarySegmentationModule",
    "ConditionalVAE",
    "SegmentationModule",
    "SoftLabelDataset",
    "TrainConfig",
    "VLSStage1Module",
    "build_objective",
    "is_multiclass",
    "last_checkpoint",
    "load_config",
    "load_module",
    "method_names",
    "predict_class_probabilities",
    "predict_images",
    "predict_logits",
    "run_started",
    "save_config",
    "train",
    "vls_soft_labels",
    "write_soft_labels",
]

__getattr__ = moved_names(__name__, {"SoftLabelKLLoss": "densecal.losses",
                                     "OBJECTIVES": "densecal.methods.registry"},
                          renamed={"OBJECTIVES": "METHODS"})
