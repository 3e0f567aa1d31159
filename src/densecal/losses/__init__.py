"""Training objectives for calibrated dense classifiers.

SC-BCE (the self-calibrating BCE of ASLP, with plain BCE, binary label smoothing and SLP as
special cases) and ASLP's per-image perturbation controller; the calibration baselines for
binary and multi-class dense outputs -- label smoothing, focal loss, entropy penalty, MbLS and
SVLS; CALSeg's soft-label KL; the losses of uncertainty distillation. Formulas, defaults and
sources: ``docs/methods.md`` and each module's docstrings.
"""

from __future__ import annotations

from densecal.losses._common import reduce_pixels
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
    BetaConvention,
    SCBCELoss,
    Technique,
    per_image_statistics,
    perturbed_target,
    sc_bce_loss,
    technique_beta,
)
from densecal.losses.soft_label import SoftLabelKLLoss, one_hot_labels, soft_label_kl
from densecal.losses.svls import SVLSLoss, svls_kernel, svls_loss, svls_smooth

__all__ = [
    "AdaptivePerturbation",
    "BetaConvention",
    "EntropyPenaltyLoss",
    "FocalLoss",
    "LabelSmoothingLoss",
    "MbLSLoss",
    "Objective",
    "SCBCELoss",
    "SVLSLoss",
    "SoftLabelKLLoss",
    "Technique",
    "entropy_penalty_loss",
    "focal_loss",
    "label_smoothing_loss",
    "label_uncertainty",
    "margin_penalty",
    "mbls_loss",
    "one_hot_labels",
    "paln_loss",
    "pdd_loss",
    "per_image_statistics",
    "perturbed_target",
    "reduce_pixels",
    "sc_bce_loss",
    "soft_label_kl",
    "svls_kernel",
    "svls_loss",
    "svls_smooth",
    "teacher_loss",
    "technique_beta",
    "uad_loss",
    "uncertainty_attention",
]

def __getattr__(name: str) -> object:
    if name == "LossTask":  # 0.1's name of the losses' task enum
        import warnings

        from densecal.types import Task

        warnings.warn("densecal.losses.LossTask is densecal.types.Task; the old name is removed "
                      "in densecal 0.3", DeprecationWarning, stacklevel=2)
        return Task
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
