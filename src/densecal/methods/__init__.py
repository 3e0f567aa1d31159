"""Training methods: one LightningModule per family, built from core losses and metrics.

This package imports Lightning; the core packages (losses, metrics) never do.
"""

from densecal.methods.binary import BinarySegmentationModule
from densecal.methods.config import TrainConfig, load_config, save_config
from densecal.methods.inference import load_module, predict_images, predict_logits
from densecal.methods.objectives import OBJECTIVES, build_objective, method_names
from densecal.methods.train import last_checkpoint, train

__all__ = [
    "OBJECTIVES",
    "BinarySegmentationModule",
    "TrainConfig",
    "build_objective",
    "last_checkpoint",
    "load_config",
    "load_module",
    "method_names",
    "predict_images",
    "predict_logits",
    "save_config",
    "train",
]
