"""Training objectives for calibrated dense classifiers.

SC-BCE (the self-calibrating BCE of ASLP, with plain BCE, binary label smoothing and SLP as
special cases) and ASLP's per-image perturbation controller. Sources and formulas: METHODS.md
section 1 and each module's docstrings.
"""

from __future__ import annotations

from densecal.losses.aslp import AdaptivePerturbation, Objective
from densecal.losses.scbce import (
    SCBCELoss,
    Technique,
    per_image_statistics,
    perturbed_target,
    sc_bce_loss,
    technique_beta,
)

__all__ = [
    "AdaptivePerturbation",
    "Objective",
    "SCBCELoss",
    "Technique",
    "per_image_statistics",
    "perturbed_target",
    "sc_bce_loss",
    "technique_beta",
]
