"""Training methods: one LightningModule per family, built from core losses and metrics.

This package imports Lightning; the core packages (losses, metrics) never do.
"""

from densecal.methods.binary import BinarySegmentationModule, SegmentationModule
from densecal.methods.config import TrainConfig, load_config, save_config
from densecal.methods.inference import (
    load_module,
    predict_class_probabilities,
    predict_images,
    predict_logits,
)
from densecal.methods.objectives import OBJECTIVES, build_objective, is_multiclass, method_names
from densecal.methods.train import last_checkpoint, run_started, train
from densecal.methods.vls import SoftLabelDataset, VLSStage1Module, write_soft_labels
from densecal.methods.vls_nets import ConditionalVAE, SoftLabelKLLoss, vls_soft_labels

__all__ = [
    "OBJECTIVES",
    "BinarySegmentationModule",
    "ConditionalVAE",
    "SegmentationModule",
    "SoftLabelDataset",
    "SoftLabelKLLoss",
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
