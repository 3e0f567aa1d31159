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
    flip_counts,
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
    """Accumulates per-image GED², HM-IoU, diversity and the flip calibration over a dataset.

    GED², HM-IoU and diversity are per-image values averaged at :meth:`compute`. The flip
    calibration ``flip_error`` pools the counts over images first, as the CARSSS evaluation
    pools its class probabilities (twin picks over all (sample, pixel) pairs of the class, then
    ``|share - p|``): it tends to 0 for a perfect sampler as images are added.
    ``flip_error_per_image`` averages the per-image errors instead, which keep a floor of about
    ``sqrt(p (1 - p) / N)`` with ``N`` samples per image (0.08-0.10 at ``N = 16``, ``p`` 0.3-0.5,
    for whole-object flips). All states are sums reduced with ``dist_reduce_fx="sum"``.

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
        self.add_state("flip_twins", default=torch.zeros(n_flip, dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("flip_pairs", default=torch.zeros(n_flip, dtype=torch.float64),
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
                counts = flip_counts(samples[i], base_labels[i], self.flips)
                for k, cls in enumerate(self._flip_classes):
                    if cls in counts:
                        twins, pairs = counts[cls]
                        self.flip_error_sum[k] += abs(twins / pairs - self.flips[cls][1])
                        self.flip_count[k] += 1.0
                        self.flip_twins[k] += twins
                        self.flip_pairs[k] += pairs

    def compute(self) -> dict[str, Tensor]:
        """Means over images: ``ged`` (D²_GED), ``hm_iou``, ``diversity``; with flips
        ``flip_error`` (pooled: per class ``|sum twin picks / sum pairs - p|``, then the mean over
        the classes seen) and ``flip_error/<class>``, and the per-image variant
        ``flip_error_per_image`` (per class the mean of the per-image errors, then the mean over
        classes) with ``flip_error_per_image/<class>``. NaN for a class never seen."""
        n = self.count.clamp_min(1.0)
        out = {"ged": self.ged_sum / n, "hm_iou": self.hm_iou_sum / n,
               "diversity": self.diversity_sum / n}
        if self._flip_classes:
            seen = self.flip_count > 0
            p = torch.tensor([self.flips[c][1] for c in self._flip_classes], dtype=torch.float64,
                             device=self.flip_pairs.device)
            pooled = (self.flip_twins / self.flip_pairs.clamp_min(1.0) - p).abs()
            per_image = self.flip_error_sum / self.flip_count.clamp_min(1.0)
            for name, values in (("flip_error", pooled), ("flip_error_per_image", per_image)):
                out[name] = _mean_seen(values, seen)
                for k, cls in enumerate(self._flip_classes):
                    out[f"{name}/{cls}"] = values[k] if bool(seen[k]) else _nan()
        return out


def _nan() -> Tensor:
    return torch.tensor(math.nan, dtype=torch.float64)


def _mean_seen(values: Tensor, seen: Tensor) -> Tensor:
    return values[seen].mean() if bool(seen.any()) else _nan()

