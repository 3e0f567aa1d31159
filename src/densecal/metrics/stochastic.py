"""Stochastic segmentation metrics as a torchmetrics ``Metric`` (GED, HM-IoU, diversity, flip
calibration; formulas: :mod:`densecal.metrics.functional.stochastic`, its functional twin)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric

from densecal._deprecated import moved_names
from densecal.errors import input_error
from densecal.metrics.functional.stochastic import (
    Flips,
    check_flips,
    flip_frequency_error,
    generalized_energy_distance,
    hungarian_matched_iou,
    sample_diversity,
)

__all__ = ["StochasticSegmentationMetrics"]

__getattr__ = moved_names(__name__, dict.fromkeys(
    ("Flips", "flip_frequencies", "flip_frequency_error", "generalized_energy_distance",
     "hungarian_matched_iou", "iou_distance", "pairwise_iou", "sample_diversity"),
    "densecal.metrics.functional.stochastic"))


class StochasticSegmentationMetrics(Metric):
    """Accumulates per-image GED², HM-IoU, diversity and flip-frequency errors over a dataset.

    Each image contributes its own values (per-image metrics, averaged at :meth:`compute`), so
    states are sums and counts reduced with ``dist_reduce_fx="sum"`` across ranks.

    Args:
        num_classes: multi-class IoU convention, see :func:`pairwise_iou`.
        flips: ``{class: (twin, probability)}`` to also track flip-frequency errors (needs
            ``base_labels`` in :meth:`update`), or ``None``.

    Example:
        >>> metric = StochasticSegmentationMetrics()
        >>> s = torch.tensor([[[[1, 0]], [[0, 1]]]])
        >>> metric.update(s, s)
        >>> {k: round(float(v), 4) for k, v in metric.compute().items()}
        {'ged': 0.0, 'hm_iou': 1.0, 'diversity': 0.5}
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, num_classes: int | None = None, flips: Flips | None = None,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.flips = dict(flips) if flips else {}
        check_flips(self.flips)
        self._flip_classes = sorted(self.flips)
        zero = torch.tensor(0.0, dtype=torch.float64)
        for name in ("ged_sum", "hm_iou_sum", "diversity_sum", "count"):
            self.add_state(name, default=zero.clone(), dist_reduce_fx="sum")
        n_flip = len(self._flip_classes)
        self.add_state("flip_error_sum", default=torch.zeros(n_flip, dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("flip_count", default=torch.zeros(n_flip, dtype=torch.float64),
                       dist_reduce_fx="sum")

    def update(self, samples: Tensor, labels: Tensor, label_weights: Tensor | None = None,
               base_labels: Tensor | None = None) -> None:
        """Add a batch of images.

        Args:
            samples: ``(B, N, *S)`` integer sampled maps.
            labels: ``(B, M, *S)`` integer ground-truth maps.
            label_weights: ``(B, M)`` mode probabilities, or ``None``.
            base_labels: ``(B, *S)`` unflipped maps, needed when ``flips`` was given.
        """
        if samples.dim() < 2 or labels.dim() < 2 or samples.shape[0] != labels.shape[0]:
            raise input_error("samples", f"expected (B, N, *S) and (B, M, *S) with the same B, "
                                         f"got {tuple(samples.shape)} and {tuple(labels.shape)}")
        if self.flips and base_labels is None:
            raise input_error("base_labels", "required when the metric tracks flips")
        for i in range(samples.shape[0]):
            w = None if label_weights is None else label_weights[i]
            self.ged_sum += generalized_energy_distance(samples[i], labels[i], w,
                                                        self.num_classes).to(self.ged_sum)
            self.hm_iou_sum += hungarian_matched_iou(samples[i], labels[i],
                                                     self.num_classes).to(self.ged_sum)
            self.diversity_sum += sample_diversity(samples[i], self.num_classes).to(self.ged_sum)
            self.count += 1.0
            if self.flips and base_labels is not None:
                errors = flip_frequency_error(samples[i], base_labels[i], self.flips)
                for k, cls in enumerate(self._flip_classes):
                    if cls in errors:
                        self.flip_error_sum[k] += errors[cls]
                        self.flip_count[k] += 1.0

    def compute(self) -> dict[str, Tensor]:
        """Means over images: ``ged`` (D²_GED), ``hm_iou``, ``diversity``, and with flips
        ``flip_error`` (mean over classes of the per-class mean) and ``flip_error/<class>``."""
        n = self.count.clamp_min(1.0)
        out = {"ged": self.ged_sum / n, "hm_iou": self.hm_iou_sum / n,
               "diversity": self.diversity_sum / n}
        if self._flip_classes:
            seen = self.flip_count > 0
            per_class = self.flip_error_sum / self.flip_count.clamp_min(1.0)
            out["flip_error"] = (per_class[seen].mean() if bool(seen.any())
                                 else torch.tensor(math.nan, dtype=torch.float64))
            for k, cls in enumerate(self._flip_classes):
                out[f"flip_error/{cls}"] = (per_class[k] if bool(seen[k])
                                            else torch.tensor(math.nan, dtype=torch.float64))
        return out

