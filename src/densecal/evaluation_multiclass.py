"""Evaluate multi-class maps: top-label and class-wise calibration, Dice and IoU per class.

The multi-class counterpart of :mod:`densecal.evaluation`. Pairs of (class probabilities
``(K, H, W)``, label map ``(H, W)``) stream in one at a time; the result follows schema
``densecal.evaluate-multiclass/1``:

    {"schema": "densecal.evaluate-multiclass/1",
     "dataset": {"name", "n_images", "n_pixels"},
     "protocol": {"n_bins", "confidence": "top-label", "aggregate", "num_classes",
                  "ignore_index", "include_background"},
     "calibration": {"ece", "mce", "oe", "ace", "brier", "nll", "accuracy",
                     "classwise_ece", "marginal_ece", "ece_class": [K values]},
     "segmentation": {"dice", "iou", "dice_class": [K], "iou_class": [K]},
     "reliability": {"bin_lower", "bin_upper", "count", "confidence", "accuracy"}}

Dice and IoU per class are pooled over the dataset (2·TP / (2·TP + FP + FN) and TP / (TP + FP +
FN) from summed per-class counts of the argmax prediction; NaN for a class absent from both
prediction and truth); ``dice`` / ``iou`` are their means over the classes counted by
``include_background`` (class 0 left out when false), ignoring NaN. All values are fractions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from densecal.errors import input_error
from densecal.evaluation import Evaluation
from densecal.metrics import PixelCalibration

__all__ = ["EVALUATE_MULTICLASS_SCHEMA", "MulticlassEvaluator", "MulticlassOptions"]

EVALUATE_MULTICLASS_SCHEMA = "densecal.evaluate-multiclass/1"
_ROW_KEYS = ("ece", "oe", "mce", "accuracy", "brier", "nll", "classwise_ece")


@dataclass(frozen=True)
class MulticlassOptions:
    """Scoring options for K-class maps (pooled or per-image calibration, 10 bins by default)."""

    num_classes: int
    n_bins: int = 10
    aggregate: str = "pooled"
    ignore_index: int | None = None
    include_background: bool = True

    def metric_kwargs(self, aggregate: str | None = None) -> dict[str, Any]:
        """Keyword arguments of :class:`PixelCalibration` for these options."""
        return {"task": "multiclass", "num_classes": self.num_classes, "n_bins": self.n_bins,
                "aggregate": aggregate or self.aggregate, "ignore_index": self.ignore_index,
                "include_background": self.include_background}

    def to_dict(self) -> dict[str, Any]:
        """The ``protocol`` block of the result."""
        return {"n_bins": self.n_bins, "confidence": "top-label", "aggregate": self.aggregate,
                "num_classes": self.num_classes, "ignore_index": self.ignore_index,
                "include_background": self.include_background}


class MulticlassEvaluator:
    """Streaming evaluator of K-class probability maps against label maps.

    Args:
        options: the scoring options (``num_classes`` required).
        name: dataset name for the result.
    """

    def __init__(self, options: MulticlassOptions, name: str = "") -> None:
        self.options = options
        self.name = name
        self.calibration = PixelCalibration(**options.metric_kwargs())
        k = options.num_classes
        self.tp, self.fp, self.fn = (np.zeros(k, np.int64) for _ in range(3))
        self.rows: list[dict[str, Any]] = []
        self.n_pixels = 0

    def add(self, name: str, probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        """Score one image: ``probs`` ``(K, H, W)`` summing to 1 over K, ``labels`` ``(H, W)``
        class indices (``ignore_index`` pixels left out).

        Raises:
            DensecalInputError: shape mismatch or invalid values (naming ``name``).
        """
        k = self.options.num_classes
        if probs.ndim != 3 or probs.shape[0] != k or probs.shape[1:] != labels.shape:
            raise input_error(name, f"class probabilities {tuple(probs.shape)} do not match "
                              f"{k} classes x label size {tuple(labels.shape)}")
        p = torch.from_numpy(np.ascontiguousarray(probs, dtype=np.float32))[None]
        y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))[None]
        own = PixelCalibration(**self.options.metric_kwargs("pooled"))
        own.update(p, y)
        values = own.compute()
        if self.options.aggregate == "pooled":
            self.calibration.merge_state(own)
        else:
            self.calibration.update(p, y)
        pred = probs.argmax(axis=0)
        valid = labels != self.options.ignore_index if self.options.ignore_index is not None \
            else np.ones_like(labels, bool)
        pred, truth = pred[valid], labels[valid]
        tp = np.bincount(truth[pred == truth], minlength=k)[:k]
        self.tp += tp
        self.fp += np.bincount(pred, minlength=k)[:k] - tp
        self.fn += np.bincount(truth, minlength=k)[:k] - tp
        self.n_pixels += int(valid.sum())
        row = {"name": name, **{key: float(values[key]) for key in _ROW_KEYS}}
        self.rows.append(row)
        return row

    def evaluation(self) -> Evaluation:
        """The accumulated result (schema ``densecal.evaluate-multiclass/1``) and per-image rows.

        Raises:
            DensecalInputError: no image was added.
        """
        if not self.rows:
            raise input_error(self.name or "dataset", "no images to evaluate")
        values = self.calibration.compute()
        with np.errstate(invalid="ignore", divide="ignore"):
            dice = 2 * self.tp / (2 * self.tp + self.fp + self.fn)
            iou = self.tp / (self.tp + self.fp + self.fn)
        counted = slice(0 if self.options.include_background else 1, None)
        calibration = {key: float(values[key]) for key in
                       ("ece", "mce", "oe", "ace", "brier", "nll", "accuracy", "classwise_ece",
                        "marginal_ece")}
        calibration["ece_class"] = [float(v) for v in values["ece_class"].tolist()]
        result = {
            "schema": EVALUATE_MULTICLASS_SCHEMA,
            "dataset": {"name": self.name, "n_images": len(self.rows),
                        "n_pixels": self.n_pixels},
            "protocol": self.options.to_dict(),
            "calibration": calibration,
            "segmentation": {"dice": float(np.nanmean(dice[counted])),
                             "iou": float(np.nanmean(iou[counted])),
                             "dice_class": dice.tolist(), "iou_class": iou.tolist()},
            "reliability": {k: [float(x) for x in v.tolist()]
                            for k, v in self.calibration.reliability().items()},
        }
        return Evaluation(result, list(self.rows))
