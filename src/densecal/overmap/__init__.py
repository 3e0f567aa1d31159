"""Over-MAP: confidence from the overlap of Grad-CAM and an object segmentation (docs/methods.md
section 6).

Kantor et al., AAAI 2021 (two-page abstract, no code); the definitions here are densecal's.
"""

from __future__ import annotations

from densecal._deprecated import moved_names
from densecal.overmap.analysis import OvermapResult, analyse_images
from densecal.overmap.evaluation import (
    accuracy_by_bin,
    audit_order,
    aurc,
    combine_confidence,
    misclassification_auroc,
    precision_at_k,
    risk_coverage,
)
from densecal.overmap.gradcam import grad_cam, minmax_normalise, resolve_layer
from densecal.overmap.masks import masks_from_folder
from densecal.overmap.report import OVERMAP_SCHEMA, overmap_metrics, write_overmap_outputs
from densecal.overmap.scores import (
    SCORES,
    OverlapScore,
    attention_mass,
    overlap_scores,
    peak_in_mask,
    threshold_iou,
)

__all__ = [
    "OVERMAP_SCHEMA",
    "SCORES",
    "OverlapScore",
    "OvermapResult",
    "accuracy_by_bin",
    "analyse_images",
    "attention_mass",
    "audit_order",
    "aurc",
    "combine_confidence",
    "grad_cam",
    "masks_from_folder",
    "minmax_normalise",
    "misclassification_auroc",
    "overlap_scores",
    "overmap_metrics",
    "peak_in_mask",
    "precision_at_k",
    "resolve_layer",
    "risk_coverage",
    "threshold_iou",
    "write_overmap_outputs",
]

__getattr__ = moved_names(__name__, {"masks_from_segmenter": "densecal.apps.overmap"})
