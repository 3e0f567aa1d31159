"""CALSeg's variational label smoothing (Guo et al., ICASSP 2024): the conditional VAE and its
formulas (:mod:`~.nets`), stage 1 and the cached soft labels (:mod:`~.stage1`). Stage 2 is a
segmentation objective (``vls``) with :class:`densecal.losses.SoftLabelKLLoss`."""

from __future__ import annotations

from densecal._deprecated import moved_names
from densecal.methods.vls.nets import ConditionalVAE, vls_soft_labels
from densecal.methods.vls.stage1 import SoftLabelDataset, VLSStage1Module, write_soft_labels

__all__ = ["ConditionalVAE", "SoftLabelDataset", "VLSStage1Module", "vls_soft_labels",
           "write_soft_labels"]

# 0.1's module densecal.methods.vls held stage 1 and the soft-label cache: its other names
__getattr__ = moved_names(__name__, dict.fromkeys(("CVAEOutput", "cvae_loss", "gaussian_kl"),
                                                  "densecal.methods.vls.nets"),
                          default="densecal.methods.vls.stage1")
