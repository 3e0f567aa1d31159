"""Training objectives for calibrated dense classifiers.

SC-BCE (the self-calibrating BCE of ASLP, with plain BCE, binary label smoothing and SLP as
special cases) and ASLP's per-image perturbation controller (METHODS.md section 1); the
calibration baselines for binary and multi-class dense outputs -- label smoothing, focal loss,
entropy penalty, MbLS and SVLS (METHODS.md section 2). Sources and formulas: each module's
docstrings.
"""

from __future__ import annotations

from densecal.losses._common import Task as LossTask
from densecal.losses.aslp import AdaptivePerturbation, Objective
from densecal.losses.distillation import (
    label_uncertainty,
    paln_loss,
    pdd_loss,
    teacher_loss,
    uad_loss,
    uncertainty_attention,
)
from densecal.losses.entropy import EntropyPenaltyLoss, entropy_penalty_loss
from densecal.losses.focal import FocalLoss, focal_loss
from densecal.losses.label_smoothing import LabelSmoothingLoss, label_smoothing_loss
from densecal.losses.mbls import MbLSLoss, margin_penalty, mbls_loss
from densecal.losses.scbce import (
    SCBCELoss,
    Technique,
    per_image_statistics,
    perturbed_target,
    sc_bce_loss,
    technique_beta,
)
from densecal.losses.svls import SVLSLoss, svls_kernel, svls_loss, svls_smooth

__all__ = [
    "AdaptivePerturbation",
    "EntropyPenaltyLoss",
    "FocalLoss",
    "LabelSmoothingLoss",
    "LossTask",
    "MbLSLoss",
    "Objective",
    "SCBCELoss",
    "SVLSLoss",
    "Technique",
    "entropy_penalty_loss",
    "focal_loss",
    "label_smoothing_loss",
    "label_uncertainty",
    "margin_penalty",
    "mbls_loss",
    "paln_loss",
    "pdd_loss",
    "per_image_statistics",
    "perturbed_target",
    "sc_bce_loss",
    "svls_kernel",
    "svls_loss",
    "svls_smooth",
    "teacher_loss",
    "technique_beta",
    "uad_loss",
    "uncertainty_attention",
]
