"""CALSeg's variational label smoothing (Guo et al., ICASSP 2024): the conditional VAE and its
formulas (:mod:`~.nets`), stage 1 and the cached soft labels (:mod:`~.stage1`). Stage 2 is a
segmentation objective (``vls``) with :class:`densecal.losses.SoftLabelKLLoss`."""

from __future__ import annotations

from densecal.methods.vls.nets import ConditionalVAE, CVAEOutput, cvae_loss, vls_soft_labels
from densecal.methods.vls.stage1 import (
    SOFT_LABELS_SCHEMA,
    STAGE1_KIND,
    SoftLabelDataset,
    VLSStage1Module,
    augment_with_soft,
    file_sha256,
    load_stage1,
    soft_label_dir,
    soft_label_training_set,
    stage1_checkpoint,
    stage1_finished,
    write_soft_labels,
)

__all__ = [
    "SOFT_LABELS_SCHEMA",
    "STAGE1_KIND",
    "CVAEOutput",
    "ConditionalVAE",
    "SoftLabelDataset",
    "VLSStage1Module",
    "augment_with_soft",
    "cvae_loss",
    "file_sha256",
    "load_stage1",
    "soft_label_dir",
    "soft_label_training_set",
    "stage1_checkpoint",
    "stage1_finished",
    "vls_soft_labels",
    "write_soft_labels",
]
