"""Multi-label recognition metrics: mAP (difficult ignored), CP, CR, CF1, OP, OR, OF1.

Conventions of the multi-label literature (VOC 2007 / MS-COCO, as used by uncertainty
distillation, Song et al. ACM MM 2021, and the ML-GCN evaluation code it builds on):

- Targets ``(N, C)`` with values 0 (absent), 1 (present), 2 (present and "difficult").
  Difficult entries are **ignored** by every metric here (left out of AP and of the counts).
- AP of class c: non-interpolated average precision over the images ranked by score,
  ``AP = Σ_n (R_n − R_{n−1})·P_n`` over the distinct score thresholds (ties share one
  threshold, so the value does not depend on the order of tied images; the same quantity as
  torchmetrics' ``MultilabelAveragePrecision`` and scikit-learn's ``average_precision_score``).
  Without ties it is the mean of the precisions at the ranks of the positives. mAP = mean of the
  AP of classes with at least one positive (others are NaN and left out).
- ``map_hard``: mAP over the images that carry at least one difficult label.
- Counts at a decision rule: per class ``Nc`` (correct positive predictions), ``Np``
  (predictions), ``Ng`` (ground-truth positives). CP = mean_c Nc/Np (0 when Np = 0),
  CR = mean_c Nc/Ng, both over classes with Ng > 0; CF1 = 2·CP·CR/(CP + CR) (harmonic mean of
  the averages, the ML-GCN convention); OP = ΣNc/ΣNp, OR = ΣNc/ΣNg, OF1 = 2·OP·OR/(OP + OR).
- Rules: ``score >= threshold`` (0.5 on probabilities), and ``top-3``: the 3 highest scores of
  an image that are also ``>= threshold`` (ML-GCN's ``overall_topk``).

Two counting conventions for CP/CR/OP/OR (``convention``):

- ``"ignore-difficult"`` (default, above): a predicted difficult label is neither right nor
  wrong, and the class means run over classes with a positive.
- ``"ml-gcn"``: the evaluation code shipped with ML-GCN and uncertainty distillation
  (github.com/lsongx/ud, ``engine/util.py``, ``AveragePrecisionMeter.evaluation``): difficult
  entries count as negatives, so a predicted difficult label is a false positive in ``Np``;
  ``Ng`` counts the non-difficult positives; CP and CR are means over *all* ``C`` classes
  (``Np = 0`` read as 1; a class without positives makes CR NaN, as there). Example:
  ``p = [[.9, .8], [.2, .7]]``, ``t = [[1, 2], [0, 1]]``: OP = CP = 1 by default, OP = 2/3
  and CP = 3/4 under ``"ml-gcn"``. AP and mAP ignore difficult entries in both.
"""

from __future__ import annotations

import torch
from torch import Tensor

from densecal._checks import parse_choice
from densecal.errors import input_error
from densecal.types import StrEnum

__all__ = [
    "CONVENTIONS",
    "COUNT_KEYS",
    "Counting",
    "average_precision",
    "check_convention",
    "label_counts",
    "mean_average_precision",
    "multilabel_metrics",
    "scores_from_counts",
]

COUNT_KEYS: tuple[str, ...] = ("cp", "cr", "cf1", "op", "or", "of1")
class Counting(StrEnum):
    """Counting conventions of :func:`label_counts` / :func:`scores_from_counts`."""

    IGNORE_DIFFICULT = "ignore-difficult"
    ML_GCN = "ml-gcn"


CONVENTIONS: tuple[str, ...] = tuple(Counting)
"""The values of :class:`Counting`."""


def check_convention(convention: str) -> Counting:
    """The :class:`Counting` named ``convention``.

    Raises:
        DensecalInputError: any other value.
    """
    return parse_choice(Counting, convention, "convention")


def check_inputs(scores: Tensor, target: Tensor) -> None:
    if scores.dim() != 2 or scores.shape != target.shape:
        raise input_error("target", f"expected scores and targets of the same (N, C) shape, got "
                                    f"{tuple(scores.shape)} and {tuple(target.shape)}")
    if target.numel() and not bool(((target == 0) | (target == 1) | (target == 2)).all()):
        raise input_error("target", "values must be 0 (absent), 1 (present) or 2 (difficult)")


def average_precision(scores: Tensor, target: Tensor) -> Tensor:
    """Per-class non-interpolated AP with difficult entries ignored.

    Args:
        scores: ``(N, C)`` scores (probabilities or logits: only the order matters).
        target: ``(N, C)`` in {0, 1, 2} (2 = difficult, ignored).

    Returns:
        ``(C,)`` float64 AP in [0, 1], NaN for classes without a (non-difficult) positive.

    Raises:
        DensecalInputError: shapes or target values.

    Example:
        >>> s = torch.tensor([[0.9], [0.8], [0.7]])
        >>> average_precision(s, torch.tensor([[1], [0], [1]])).tolist()  # (1 + 2/3) / 2
        [0.8333333333333333]
    """
    check_inputs(scores, target)
    out = torch.full((scores.shape[1],), float("nan"), dtype=torch.float64)
    for c in range(scores.shape[1]):
        keep = target[:, c] != 2
        s = scores[keep, c].double()
        y = (target[keep, c] == 1).double()
        n_pos = y.sum()
        if n_pos == 0:
            continue
        order = torch.argsort(s, descending=True)
        s, y = s[order], y[order]
        tp = torch.cumsum(y, 0)
        # last index of each run of tied scores: one threshold per distinct score
        last = torch.ones_like(s, dtype=torch.bool)
        last[:-1] = s[1:] != s[:-1]
        tp = tp[last]
        seen = (torch.nonzero(last).squeeze(1) + 1).double()
        precision = tp / seen
        recall_step = torch.diff(tp, prepend=tp.new_zeros(1)) / n_pos
        out[c] = (recall_step * precision).sum()
    return out


def mean_average_precision(scores: Tensor, target: Tensor) -> Tensor:
    """mAP: mean of :func:`average_precision` over classes with a positive (0-dim float64;
    NaN when no class has one)."""
    ap = average_precision(scores, target)
    valid = ~torch.isnan(ap)
    return ap[valid].mean() if bool(valid.any()) else ap.new_tensor(float("nan"))


def ranking_metrics(scores: Tensor, target: Tensor) -> dict[str, Tensor]:
    """``ap`` ``(C,)``, ``map`` and ``map_hard`` (images with a difficult label; NaN if none)."""
    ap = average_precision(scores, target)
    valid = ~torch.isnan(ap)
    hard = (target == 2).any(1)
    return {"ap": ap,
            "map": ap[valid].mean() if bool(valid.any()) else ap.new_tensor(float("nan")),
            "map_hard": (mean_average_precision(scores[hard], target[hard]) if bool(hard.any())
                         else ap.new_tensor(float("nan")))}


def label_counts(scores: Tensor, target: Tensor, *, threshold: float = 0.5,
                 top_k: int | None = None, convention: str = "ignore-difficult") -> Tensor:
    """Per-class counts ``(3, C)`` int64: rows ``Nc``, ``Np``, ``Ng``.

    Args:
        scores: ``(N, C)`` probabilities (``threshold`` applies to them).
        target: ``(N, C)`` in {0, 1, 2}.
        threshold: predicted when ``score >= threshold``.
        top_k: if given, also require the label to be among the image's ``top_k`` highest.
        convention: ``"ignore-difficult"`` (difficult entries left out of ``Np``) or
            ``"ml-gcn"`` (a predicted difficult label counts in ``Np``, as a false positive).

    Raises:
        DensecalInputError: shapes, target values, ``top_k < 1`` or an unknown convention.
    """
    check_convention(convention)
    check_inputs(scores, target)
    predicted = scores >= threshold
    if top_k is not None:
        if top_k < 1:
            raise input_error("top_k", f"must be >= 1, got {top_k}")
        k = min(top_k, scores.shape[1])
        in_top = torch.zeros_like(predicted)
        in_top.scatter_(1, scores.topk(k, dim=1).indices, True)
        predicted &= in_top
    keep = target != 2 if convention == "ignore-difficult" else torch.ones_like(predicted)
    positive = target == 1
    return torch.stack([(predicted & positive).sum(0), (predicted & keep).sum(0),
                        positive.sum(0)]).long()


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    return torch.where(den > 0, num / den.clamp_min(1), torch.zeros_like(num))


def _f1(p: Tensor, r: Tensor) -> Tensor:
    return torch.where(p + r > 0, 2 * p * r / (p + r).clamp_min(1e-300), torch.zeros_like(p))


def scores_from_counts(counts: Tensor, convention: str = "ignore-difficult"
                       ) -> dict[str, Tensor]:
    """CP, CR, CF1, OP, OR, OF1 (0-dim float64) from :func:`label_counts` ``(3, C)``; the
    class means over classes with a positive, or over all classes under ``"ml-gcn"``."""
    nc, np_, ng = counts.double()
    if check_convention(convention) == "ml-gcn":
        cp = (nc / np_.clamp_min(1.0)).mean()
        cr = (nc / ng).mean()  # a class without positives gives NaN, as the reference
        op, or_ = _ratio(nc.sum(), np_.sum()), _ratio(nc.sum(), ng.sum())
        return {"cp": cp, "cr": cr, "cf1": _f1(cp, cr), "op": op, "or": or_,
                "of1": _f1(op, or_)}
    has = ng > 0
    cp = _ratio(nc, np_)[has].mean() if bool(has.any()) else nc.new_tensor(0.0)
    cr = _ratio(nc, ng)[has].mean() if bool(has.any()) else nc.new_tensor(0.0)
    op = _ratio(nc.sum(), np_.sum())
    or_ = _ratio(nc.sum(), ng.sum())
    return {"cp": cp, "cr": cr, "cf1": _f1(cp, cr), "op": op, "or": or_, "of1": _f1(op, or_)}


def multilabel_metrics(scores: Tensor, target: Tensor, *, threshold: float = 0.5,
                       top_k: int = 3, convention: str = "ignore-difficult"
                       ) -> dict[str, Tensor]:
    """Every multi-label metric of the module docstring at once.

    Args:
        scores: ``(N, C)`` probabilities.
        target: ``(N, C)`` in {0, 1, 2}.
        threshold: decision threshold (0.5).
        top_k: k of the top-k rule (3).
        convention: counting of difficult labels (see the module docstring).

    Returns:
        0-dim float64 tensors: ``map``, ``map_hard``, ``cp``, ``cr``, ``cf1``, ``op``, ``or``,
        ``of1`` (threshold rule) and the same six with suffix ``_top{k}``; ``ap`` ``(C,)``.

    Raises:
        DensecalInputError: shapes or target values.
    """
    out = ranking_metrics(scores, target)
    out.update(scores_from_counts(label_counts(scores, target, threshold=threshold,
                                               convention=convention), convention))
    top = scores_from_counts(label_counts(scores, target, threshold=threshold, top_k=top_k,
                                          convention=convention), convention)
    out.update({f"{k}_top{top_k}": v for k, v in top.items()})
    return out
