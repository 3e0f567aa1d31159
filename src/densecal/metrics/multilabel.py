"""Multi-label recognition metrics as a torchmetrics ``Metric`` (formulas and conventions:
:mod:`densecal.metrics.functional.multilabel`, its functional twin)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from densecal._deprecated import moved_names
from densecal.errors import input_error
from densecal.metrics.functional.multilabel import (
    check_convention,
    check_inputs,
    label_counts,
    ranking_metrics,
    scores_from_counts,
)

__all__ = ["MultilabelMetrics"]

__getattr__ = moved_names(__name__, dict.fromkeys(
    ("COUNT_KEYS", "average_precision", "label_counts", "mean_average_precision",
     "multilabel_metrics", "scores_from_counts"), "densecal.metrics.functional.multilabel"))


class MultilabelMetrics(Metric):
    """Streaming :func:`multilabel_metrics` as a torchmetrics ``Metric``.

    The decision-rule counts are ``(3, C)`` int64 ``sum`` states (constant memory,
    DDP-summable). AP needs every score: scores and targets are kept as ``cat`` list states
    (``(N, C)`` float32 + int8), as torchmetrics' own average-precision metrics do.

    Args:
        num_classes: C.
        threshold: decision threshold on probabilities (0.5).
        top_k: k of the top-k rule (3).
        convention: ``"ignore-difficult"`` or ``"ml-gcn"`` (the reference evaluation code's
            counting of difficult labels; :mod:`densecal.metrics.functional.multilabel`).
        **kwargs: passed to :class:`torchmetrics.Metric`.

    Raises:
        DensecalInputError: ``num_classes < 1``; bad shapes / values in :meth:`update`.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, num_classes: int, *, threshold: float = 0.5, top_k: int = 3,
                 convention: str = "ignore-difficult", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_classes < 1:
            raise input_error("num_classes", f"must be >= 1, got {num_classes}")
        self.num_classes, self.threshold, self.top_k = num_classes, threshold, top_k
        self.convention = check_convention(convention)
        zeros = torch.zeros(3, num_classes, dtype=torch.long)
        self.add_state("counts", default=zeros.clone(), dist_reduce_fx="sum")
        self.add_state("counts_top", default=zeros.clone(), dist_reduce_fx="sum")
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, scores: Tensor, target: Tensor) -> None:
        """Add ``(N, C)`` probabilities and ``(N, C)`` targets in {0, 1, 2}."""
        check_inputs(scores, target)
        if scores.shape[1] != self.num_classes:
            raise input_error("scores", f"expected {self.num_classes} classes, got "
                                        f"{scores.shape[1]}")
        self.counts += label_counts(scores, target, threshold=self.threshold,
                                    convention=self.convention)
        self.counts_top += label_counts(scores, target, threshold=self.threshold,
                                        top_k=self.top_k, convention=self.convention)
        self.scores.append(scores.detach().float())
        self.targets.append(target.to(torch.int8))

    def compute(self) -> dict[str, Tensor]:
        """Same keys as :func:`multilabel_metrics`."""
        scores = _cat(self.scores, self.num_classes, torch.float32)
        target = _cat(self.targets, self.num_classes, torch.int8)
        out = ranking_metrics(scores.cpu(), target.cpu())
        out.update({k: v.cpu() for k, v in
                    scores_from_counts(self.counts, self.convention).items()})
        top = scores_from_counts(self.counts_top, self.convention)
        out.update({f"{k}_top{self.top_k}": v.cpu() for k, v in top.items()})
        return out


def _cat(parts: list[Tensor] | Tensor, c: int, dtype: torch.dtype) -> Tensor:
    if isinstance(parts, Tensor):  # after a DDP sync torchmetrics may hand one tensor
        return parts
    return torch.cat(parts) if parts else torch.zeros(0, c, dtype=dtype)
