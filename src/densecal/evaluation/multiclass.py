"""Evaluate multi-class maps: calibration (all pixels, foreground, soft truth), Dice, per volume.

The multi-class counterpart of :mod:`densecal.evaluation.binary`, following the evaluation
customs of calibrated medical segmentation (``docs/methods.md``, CALSeg: ECE on all pixels and on
foreground pixels, pooled and per-volume means, Dice per class, class-wise ECE). Images stream in
one at a time as (class probabilities ``(K, H, W)``, label map ``(H, W)``[, soft truth
``(K, H, W)``]); the result follows schema ``densecal.evaluate-multiclass/3``:

    {"schema": "densecal.evaluate-multiclass/3",
     "dataset": {"name", "n_images", "n_pixels"},
     "protocol": {"n_bins", "confidence": "top-label", "aggregate", "num_classes",
                  "ignore_index", "include_background", "foreground", "volume",
                  "soft_truth", "per_volume_std"},
     "calibration": {"ece", "mce", "oe", "ace", "brier", "nll", "accuracy",
                     "aurc", "eaurc", "auroc", "fpr95",       # /3: failure detection
                     "classwise_ece", "marginal_ece", "ece_class": [K values],
                     "ece_foreground", "mce_foreground", "oe_foreground",
                     "classwise_ece_foreground"},
     "segmentation": {"dice", "iou", "dice_class": [K], "iou_class": [K]},
     "reliability": {"bin_lower", "bin_upper", "count", "confidence", "accuracy"},
     "soft_truth": {"ece", "mce", "oe", "classwise_ece", "brier", "nll"},   # with soft truth
     "per_volume": {"n_volumes",                                  # when a stem holds "__"
                    "mean": {"dice", "ece", "ece_foreground"[, "ece_soft", "brier_soft"]},
                    "std": {same keys},
                    "volumes": [{"name", "n_images", same keys}, ...]}}

Definitions (values are fractions; NaN is written as JSON ``null``):

* ``calibration``: top-label confidence max_k p_k against the correctness of argmax_k p_k in
  ``n_bins`` equal-width bins (lo, hi] (Guo et al. 2017) by :class:`~densecal.metrics.
  PixelCalibration` (``task="multiclass"``); class-wise ECE = mean of each class's positive-mode
  ECE (Kull et al. 2019). ``*_foreground``: the same on the pixels whose ground-truth label is
  neither 0 (background) nor ``ignore_index``; there ``classwise_ece_foreground`` averages
  classes 1..K-1 (class 0 is never true on those pixels).
* ``soft_truth``: against a soft ground truth s (``SPLIT/soft/STEM.npy``): expected accuracy =
  s at the predicted class, class k's frequency = s_k; Brier = mean over pixels of sum_k (p_k -
  s_k)^2, NLL = mean over pixels of -sum_k s_k log max(p_k, 1e-7) (PixelCalibration's
  multi-class conventions, so a one-hot s gives the hard-label values).
* Dice / IoU per class, pooled: 2 TP / (2 TP + FP + FN) and TP / (TP + FP + FN) from summed
  counts of the argmax prediction (NaN for a class absent from prediction and truth); ``dice``
  / ``iou`` average the classes counted by ``include_background``, ignoring NaN.
* Volumes: stem ``<volume>__<slice>`` -> the part before the first ``__`` (a stem without
  ``__`` is its own volume). Each volume is scored from its own pooled state; ``mean`` / ``std``
  run over volumes, skipping NaN values (e.g. no foreground pixel), std with ddof = 0. Written
  when any stem holds ``__``.

Foreground and soft-truth states keep ``fine_bins = n_bins`` (equal-width bins stay exact; their
ACE is not reported), so a volume costs about one full metric state (~100 KB).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from densecal.data.readers import check_distribution
from densecal.errors import input_error
from densecal.evaluation.options import MulticlassOptions
from densecal.evaluation.schema import EVALUATE_MULTICLASS_SCHEMA, Evaluation
from densecal.metrics.calibration import PixelCalibration

__all__ = ["MulticlassEvaluator", "volume_of"]


_ROW_KEYS = ("ece", "oe", "mce", "accuracy", "brier", "nll", "classwise_ece")
_DATASET_KEYS = ("ece", "mce", "oe", "ace", "brier", "nll", "accuracy", "classwise_ece",
                 "marginal_ece", "aurc", "eaurc", "auroc", "fpr95")
_FOREGROUND_KEYS = ("ece", "mce", "oe", "classwise_ece")
_SOFT_KEYS = ("ece", "mce", "oe", "classwise_ece", "brier", "nll")


def volume_of(name: str) -> str:
    """The volume of a slice stem: everything before the first ``__`` (the stem if none).

    Example:
        >>> volume_of("mni152-axial__z080"), volume_of("a__b__c"), volume_of("single")
        ('mni152-axial', 'a', 'single')
    """
    return name.split("__", 1)[0]


@dataclass
class _Image:
    """One image as metric inputs: all valid pixels, foreground pixels, soft truth."""

    probs: torch.Tensor  # (1, K, H, W)
    labels: torch.Tensor  # (1, H, W), ignore_index kept
    fg_probs: torch.Tensor  # (1, K, n_fg)
    fg_labels: torch.Tensor  # (1, n_fg)
    soft_probs: torch.Tensor | None  # (1, K, n_valid)
    soft: torch.Tensor | None  # (1, K, n_valid)
    counts: np.ndarray  # (3, K) TP, FP, FN of the argmax prediction
    n_pixels: int


class _Group:
    """Calibration states (all pixels, foreground, soft truth) and Dice counts of some images."""

    def __init__(self, options: MulticlassOptions, soft: bool, aggregate: str = "pooled", *,
                 failure: bool = False) -> None:
        kwargs = options.metric_kwargs(aggregate)
        coarse = {**kwargs, "fine_bins": options.n_bins, "failure_detection": False}
        # the failure-detection keys are reported for the whole dataset only (``failure``)
        self.all = PixelCalibration(**kwargs, failure_detection=failure)
        self.fg = PixelCalibration(**{**coarse, "include_background": False})
        self.soft = PixelCalibration(**coarse, target_type="soft") if soft else None
        self.counts = np.zeros((3, options.num_classes), np.int64)
        self.n_images = 0
        self.include_background = options.include_background

    def update(self, image: _Image) -> None:
        """Add one image's pixels."""
        self.all.update(image.probs, image.labels)
        self.fg.update(image.fg_probs, image.fg_labels)
        if self.soft is not None:
            self.soft.update(image.soft_probs, image.soft)
        self.counts += image.counts
        self.n_images += 1

    def merge(self, other: _Group) -> None:
        """Add another (pooled) group's sums."""
        self.all.merge_state(other.all)
        self.fg.merge_state(other.fg)
        if self.soft is not None and other.soft is not None:
            self.soft.merge_state(other.soft)
        self.counts += other.counts
        self.n_images += other.n_images

    def dice_iou(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Dice ``(K,)``, IoU ``(K,)`` (NaN for absent classes) and the mean Dice."""
        tp, fp, fn = self.counts
        with np.errstate(invalid="ignore", divide="ignore"):
            dice, iou = 2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn)
        return dice, iou, _nanmean(dice[0 if self.include_background else 1:])

    def summary(self) -> dict[str, float]:
        """The per-volume keys: ``dice, ece, ece_foreground[, ece_soft, brier_soft]``."""
        out = {"dice": self.dice_iou()[2], "ece": float(self.all.compute()["ece"]),
               "ece_foreground": float(self.fg.compute()["ece"])}
        if self.soft is not None:
            out.update(self.soft_values(("ece", "brier")))
        return out

    def soft_values(self, keys: tuple[str, ...]) -> dict[str, float]:
        """Soft-truth metrics as ``{KEY_soft: value}``."""
        assert self.soft is not None
        values = self.soft.compute()
        return {f"{key}_soft": float(values[key]) for key in keys}


def _nanmean(x: np.ndarray, reduce: Any = np.nanmean) -> float:
    """``reduce(x)`` ignoring NaN (``np.nanmean`` / ``np.nanstd``); NaN if nothing is left."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all NaN -> NaN, no warning
        return float(reduce(x)) if x.size else float("nan")


class MulticlassEvaluator:
    """Streaming evaluator of K-class probability maps against label maps (and soft truth).

    One image is in memory at a time; the dataset keeps constant-size metric states and each
    volume one pooled state (see the module docstring for every definition).

    Args:
        options: the scoring options (``num_classes`` required).
        name: dataset name for the result.
        soft_truth: every image comes with a soft ground truth (adds ``soft_truth``).

    Example:
        >>> import numpy as np
        >>> probs = np.array([[[0.75, 0.5]], [[0.25, 0.5]]], np.float32)  # (2, 1, 2)
        >>> ev = MulticlassEvaluator(MulticlassOptions(num_classes=2))
        >>> row = ev.add("vol__0", probs, np.array([[0, 1]]))
        >>> calibration = ev.evaluation().result["calibration"]
        >>> calibration["ece"], calibration["ece_foreground"], row["volume"]
        (0.375, 0.5, 'vol')

        (0.75 right and 0.5 wrong: (0.25 + 0.5) / 2; the foreground pixel alone: 0.5.)
    """

    def __init__(self, options: MulticlassOptions, name: str = "", *,
                 soft_truth: bool = False) -> None:
        self.options = options
        self.name = name
        self.soft_truth = soft_truth
        self.total = _Group(options, soft_truth, options.aggregate, failure=True)
        self.volumes: dict[str, _Group] = {}
        self.rows: list[dict[str, Any]] = []
        self.n_pixels = 0

    def _prepare(self, name: str, probs: np.ndarray, labels: np.ndarray,
                 soft: np.ndarray | None) -> _Image:
        """Validate one image and build its metric inputs."""
        k, ignore = self.options.num_classes, self.options.ignore_index
        labels = np.asarray(labels)
        if labels.ndim != 2 or labels.dtype.kind not in "iub":
            raise input_error(name, f"expected an (H, W) integer label map, got "
                                    f"{labels.dtype} {tuple(labels.shape)}")
        probs = check_distribution(probs, name, k, labels.shape)
        valid = labels != ignore if ignore is not None else np.ones(labels.shape, bool)
        bad = valid & ((labels < 0) | (labels >= k))
        if bad.any():
            raise input_error(name, f"label value {labels[bad].flat[0]} is not a class "
                                    f"(0..{k - 1}, ignore_index {ignore})")
        if (soft is None) == self.soft_truth:
            raise input_error(name, "soft truth expected" if self.soft_truth
                              else "soft truth given but the evaluator was made without it")
        flat = torch.from_numpy(np.ascontiguousarray(probs)).reshape(k, -1)
        truth = labels[valid]
        pred = probs.argmax(axis=0)[valid]
        tp = np.bincount(truth[pred == truth], minlength=k)[:k]
        counts = np.stack([tp, np.bincount(pred, minlength=k)[:k] - tp,
                           np.bincount(truth, minlength=k)[:k] - tp])
        fg = torch.from_numpy((valid & (labels != 0)).ravel())
        y = torch.from_numpy(labels.astype(np.int64))
        image = _Image(probs=flat.view(1, k, *labels.shape), labels=y[None],
                       fg_probs=flat[:, fg][None], fg_labels=y.ravel()[fg][None],
                       soft_probs=None, soft=None, counts=counts, n_pixels=int(valid.sum()))
        if soft is not None:
            s = torch.from_numpy(np.ascontiguousarray(check_distribution(
                soft, f"{name} (soft truth)", k, labels.shape))).reshape(k, -1)
            keep = torch.from_numpy(valid.ravel())
            image.soft_probs, image.soft = flat[:, keep][None], s[:, keep][None]
        return image

    def add(self, name: str, probs: np.ndarray, labels: np.ndarray,
            soft: np.ndarray | None = None) -> dict[str, Any]:
        """Score one image.

        Args:
            name: the image stem (its volume is :func:`volume_of` ``(name)``).
            probs: ``(K, H, W)`` class probabilities summing to 1 over K.
            labels: ``(H, W)`` integer class indices (``ignore_index`` pixels left out).
            soft: ``(K, H, W)`` soft ground truth (a distribution per pixel), required exactly
                when the evaluator was made with ``soft_truth=True``.

        Returns:
            The image's row: ``name, volume, ece, oe, mce, accuracy, brier, nll,
            classwise_ece, dice, ece_foreground`` (+ ``ece_soft, brier_soft, nll_soft``).

        Raises:
            DensecalInputError: shape mismatch, values that are not distributions, labels
                outside 0..K-1, soft truth missing or unexpected (naming ``name``).
        """
        image = self._prepare(name, probs, labels, soft)
        own = _Group(self.options, self.soft_truth)
        own.update(image)
        if self.options.aggregate == "pooled":
            self.total.merge(own)
        else:
            self.total.update(image)
        volume = volume_of(name)
        if volume not in self.volumes:
            self.volumes[volume] = _Group(self.options, self.soft_truth)
        self.volumes[volume].merge(own)
        self.n_pixels += image.n_pixels
        values = own.all.compute()
        row: dict[str, Any] = {"name": name, "volume": volume,
                               **{key: float(values[key]) for key in _ROW_KEYS}}
        row["dice"] = own.dice_iou()[2]
        row["ece_foreground"] = float(own.fg.compute()["ece"])
        if own.soft is not None:
            row.update(own.soft_values(("ece", "brier", "nll")))
        self.rows.append(row)
        return row

    def _per_volume(self) -> dict[str, Any]:
        """The ``per_volume`` block: each volume's summary, mean and std over volumes."""
        volumes = [{"name": name, "n_images": group.n_images, **group.summary()}
                   for name, group in sorted(self.volumes.items())]
        keys = [key for key in volumes[0] if key not in ("name", "n_images")]
        columns = {key: np.array([v[key] for v in volumes], np.float64) for key in keys}
        return {"n_volumes": len(volumes),
                "mean": {key: _nanmean(columns[key]) for key in keys},
                "std": {key: _nanmean(columns[key], np.nanstd) for key in keys},
                "volumes": volumes}

    def evaluation(self) -> Evaluation:
        """The accumulated result (schema ``densecal.evaluate-multiclass/3``) and rows.

        Raises:
            DensecalInputError: no image was added.
        """
        if not self.rows:
            raise input_error(self.name or "dataset", "no images to evaluate")
        values = self.total.all.compute()
        calibration: dict[str, Any] = {key: float(values[key]) for key in _DATASET_KEYS}
        calibration["ece_class"] = [float(v) for v in values["ece_class"].tolist()]
        foreground = self.total.fg.compute()
        calibration.update({f"{key}_foreground": float(foreground[key])
                            for key in _FOREGROUND_KEYS})
        dice, iou, mean_dice = self.total.dice_iou()
        result: dict[str, Any] = {
            "schema": EVALUATE_MULTICLASS_SCHEMA,
            "dataset": {"name": self.name, "n_images": len(self.rows),
                        "n_pixels": self.n_pixels},
            "protocol": self.options.to_dict(self.soft_truth),
            "calibration": calibration,
            "segmentation": {"dice": mean_dice,
                             "iou": _nanmean(iou[0 if self.options.include_background else 1:]),
                             "dice_class": dice.tolist(), "iou_class": iou.tolist()},
            "reliability": {k: [float(x) for x in v.tolist()]
                            for k, v in self.total.all.reliability().items()},
        }
        if self.total.soft is not None:
            soft = self.total.soft.compute()
            result["soft_truth"] = {key: float(soft[key]) for key in _SOFT_KEYS}
        if any("__" in row["name"] for row in self.rows):
            result["per_volume"] = self._per_volume()
        return Evaluation(result, list(self.rows), risk_coverage=self.total.all.risk_coverage())
