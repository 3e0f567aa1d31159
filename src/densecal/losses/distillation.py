"""Uncertainty distillation losses for multi-label classification (docs/methods.md section 5).

Source: Song et al., "Uncertainty Distillation: ..." (ACM MM 2021), official code
github.com/lsongx/ud. Notation: ``o`` the classification logits ``(N, C)`` (the head used at
test time, BCE), ``s`` the calibration-branch logits ``(N, C)`` (read through a softmax over
labels), ``y`` multi-hot targets ``(N, C)`` in {0, 1} ("difficult" labels already counted as
positive), ``F`` the last feature map ``(N, K, h, w)``.

- :func:`paln_loss`: pick-all-labels normalised loss on ``s``.
- :func:`teacher_loss`: ``½[(1/C)·Σ_c BCE(o_c, y_c) + L_PALN]``.
- :func:`label_uncertainty`: ``U = KL(softmax(s) ‖ softmax(o))`` per image.
- :func:`pdd_loss`: prediction distribution distillation.
- :func:`kd_loss`: plain Bernoulli knowledge distillation of the classification head (the
  control that distils no uncertainty: no calibration-branch term, no attention).
- :func:`uncertainty_attention` and :func:`uad_loss`: uncertainty attention distillation.

Two bugs of the official code are avoided (tests check both): its positive mask used ``~`` on a
uint8 tensor (bitwise NOT on modern PyTorch: 0 -> 255, every label kept as "positive") and its
PAL-N normaliser was the positive count of the *last* image of the batch. Here the mask is
boolean and each image is normalised by its own positive count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from densecal.errors import input_error

__all__ = [
    "kd_loss",
    "label_uncertainty",
    "paln_loss",
    "pdd_loss",
    "teacher_loss",
    "uad_loss",
    "uncertainty_attention",
]


def _check_pair(name: str, a: Tensor, b: Tensor) -> None:
    if a.dim() != 2 or a.shape != b.shape:
        raise input_error(name, f"expected two (N, C) tensors of the same shape, got "
                                f"{tuple(a.shape)} and {tuple(b.shape)}")


def paln_loss(scores: Tensor, target: Tensor) -> Tensor:
    """Pick-all-labels normalised loss (PAL-N) of the calibration branch, mean over images.

    For image i with positive labels P_i and negative labels N_i:

        L_i = (1/|P_i|) Σ_{l∈P_i} −log( e^{s_l} / (e^{s_l} + Σ_{j∈N_i} e^{s_j}) )

    (Song et al. 2021, Eq. of L_PALN; each positive competes only with the negatives, not with
    the other positives). The batch loss is the mean of L_i over images with at least one
    positive (images without positives contribute nothing; a batch without any positive gives
    0 with a gradient of zeros). Computed as ``logsumexp`` over ``{l} ∪ N_i``, stable for any
    logits.

    Args:
        scores: calibration logits ``s``, ``(N, C)``.
        target: ``(N, C)`` labels; any value > 0.5 is positive (bool, integer or float).

    Returns:
        0-dim tensor.

    Raises:
        DensecalInputError: shapes differ or are not ``(N, C)``.

    Example:
        >>> s = torch.tensor([[0.0, 0.0, 0.0]])
        >>> round(paln_loss(s, torch.tensor([[1, 0, 0]])).item(), 6)  # log 3
        1.098612
    """
    _check_pair("paln_loss", scores, target)
    positive = target > 0.5  # boolean mask: never `~` on uint8 (bug 1 of the official code)
    negative = ~positive
    c = scores.shape[1]
    eye = torch.eye(c, dtype=torch.bool, device=scores.device)
    # allowed[i, l, j]: j takes part in the denominator of positive l of image i
    allowed = eye.unsqueeze(0) | negative.unsqueeze(1)
    logits = scores.unsqueeze(1).expand(-1, c, -1).masked_fill(~allowed, float("-inf"))
    per_label = torch.logsumexp(logits, dim=2) - scores  # (N, C), finite: j = l always allowed
    count = positive.sum(1)  # per-image normaliser (bug 2: not the last image's count)
    per_image = (per_label * positive).sum(1) / count.clamp_min(1)
    has = count > 0
    if not bool(has.any()):
        return (scores * 0.0).sum()
    return per_image[has].mean()


def teacher_loss(logits: Tensor, scores: Tensor, target: Tensor) -> Tensor:
    """Teacher objective ``L_T = ½[(1/C)·Σ_c BCE(o_c, y_c) + L_PALN]``, mean over images.

    Args:
        logits: classification logits ``o``, ``(N, C)``.
        scores: calibration logits ``s``, ``(N, C)``.
        target: ``(N, C)`` targets in {0, 1} (difficult labels as 1).

    Returns:
        0-dim tensor.

    Raises:
        DensecalInputError: shapes differ or are not ``(N, C)``.
    """
    _check_pair("teacher_loss", logits, target)
    _check_pair("teacher_loss", scores, target)
    bce = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))
    return 0.5 * (bce + paln_loss(scores, target))


def label_uncertainty(logits: Tensor, scores: Tensor) -> Tensor:
    """Label uncertainty ``U = KL(softmax(s) ‖ softmax(o))`` of each image, ``(N,)`` >= 0.

    The disagreement of the calibration branch and the classification head, both read as
    distributions over the C labels (Song et al. 2021, docs/methods.md section 5).

    Args:
        logits: classification logits ``o``, ``(N, C)``.
        scores: calibration logits ``s``, ``(N, C)``.

    Returns:
        ``(N,)`` tensor.

    Raises:
        DensecalInputError: shapes differ or are not ``(N, C)``.
    """
    _check_pair("label_uncertainty", logits, scores)
    log_p = F.log_softmax(scores, dim=1)
    return (log_p.exp() * (log_p - F.log_softmax(logits, dim=1))).sum(1)


def _bernoulli_kl(teacher: Tensor, student: Tensor) -> Tensor:
    """KL(Bern(σ(a)) ‖ Bern(σ(b))) elementwise from logits, stable through ``logsigmoid``."""
    p = torch.sigmoid(teacher)
    return (p * (F.logsigmoid(teacher) - F.logsigmoid(student))
            + (1 - p) * (F.logsigmoid(-teacher) - F.logsigmoid(-student)))


def pdd_loss(student_logits: Tensor, student_scores: Tensor, teacher_logits: Tensor,
             teacher_scores: Tensor, temperature: float = 3.0) -> Tensor:
    """Prediction distribution distillation, mean over images.

        L_PDD = ½[ T²·KL(softmax(s_T/T) ‖ softmax(s_S/T))
                   + (T²/(2C))·Σ_c KL_Bern(σ(o_T,c/T) ‖ σ(o_S,c/T)) ]

    (Song et al. 2021; T = 3 as the paper.) The teacher terms are detached. Zero when the
    student's logits equal the teacher's.

    Args:
        student_logits: ``o_S``, ``(N, C)``.
        student_scores: ``s_S``, ``(N, C)``.
        teacher_logits: ``o_T``, ``(N, C)``.
        teacher_scores: ``s_T``, ``(N, C)``.
        temperature: T > 0.

    Returns:
        0-dim tensor, >= 0.

    Raises:
        DensecalInputError: shapes differ or ``temperature <= 0``.
    """
    for a in (student_scores, teacher_logits, teacher_scores):
        _check_pair("pdd_loss", student_logits, a)
    if not temperature > 0:
        raise input_error("temperature", f"must be > 0, got {temperature}")
    t = float(temperature)
    c = student_logits.shape[1]
    log_pt = F.log_softmax(teacher_scores.detach() / t, dim=1)
    log_ps = F.log_softmax(student_scores / t, dim=1)
    label_kl = (log_pt.exp() * (log_pt - log_ps)).sum(1)
    bern_kl = _bernoulli_kl(teacher_logits.detach() / t, student_logits / t).sum(1)
    return 0.5 * (t * t * label_kl + t * t / (2 * c) * bern_kl).mean()


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 3.0
            ) -> Tensor:
    """Plain knowledge distillation of the classification head, mean over images.

        L_KD = (T²/C)·Σ_c KL_Bern(σ(o_T,c/T) ‖ σ(o_S,c/T))

    Each label's sigmoid read as a Bernoulli distribution, as in the classification term of
    :func:`pdd_loss` (weight 1 here). densecal's control for uncertainty distillation
    (issue 21): it transfers the teacher's predictions but nothing of its calibration branch.

    Args:
        student_logits: ``o_S``, ``(N, C)``.
        teacher_logits: ``o_T``, ``(N, C)`` (detached).
        temperature: T > 0.

    Returns:
        0-dim tensor, >= 0; zero when the logits agree.

    Raises:
        DensecalInputError: shapes differ or ``temperature <= 0``.

    Example:
        >>> kd_loss(torch.zeros(2, 3), torch.zeros(2, 3)).item()
        0.0
    """
    _check_pair("kd_loss", student_logits, teacher_logits)
    if not temperature > 0:
        raise input_error("temperature", f"must be > 0, got {temperature}")
    t = float(temperature)
    bern_kl = _bernoulli_kl(teacher_logits.detach() / t, student_logits / t)
    return (t * t / student_logits.shape[1] * bern_kl.sum(1)).mean()


def uncertainty_attention(features: Tensor, uncertainty: Tensor) -> Tensor:
    """Uncertainty attention map ``A = Σ_k w_k F_k`` with ``w = softmax_k(Σ_{h,w} ∂U/∂F_k)``.

    ``G = ∂U/∂F`` is taken of ``uncertainty.sum()``, so each image's gradient is that of its
    own U (the heads act per image; a BatchNorm in training mode couples images slightly). The
    channel weights are computed without a graph (detached, as docs/methods.md section 5 asks for
    the student); the map keeps the gradient path through ``features``. Detach the result for the
    teacher.

    Args:
        features: ``F``, ``(N, K, h, w)``; must be part of the graph that produced
            ``uncertainty``.
        uncertainty: ``U``, ``(N,)``.

    Returns:
        ``(N, h, w)`` attention map.

    Raises:
        DensecalInputError: ``features`` is not 4-D or ``uncertainty`` not ``(N,)``.
    """
    if features.dim() != 4 or uncertainty.shape != features.shape[:1]:
        raise input_error("uncertainty_attention", f"expected features (N, K, h, w) and "
                          f"uncertainty (N,), got {tuple(features.shape)} and "
                          f"{tuple(uncertainty.shape)}")
    (grad,) = torch.autograd.grad(uncertainty.sum(), features, retain_graph=True)
    weights = torch.softmax(grad.sum((2, 3)), dim=1).detach()  # (N, K)
    return torch.einsum("nk,nkhw->nhw", weights, features)


def uad_loss(student_map: Tensor, teacher_map: Tensor, weight: float = 0.1) -> Tensor:
    """Uncertainty attention distillation ``L_UAD = weight · mean (A_S − A_T)²``.

    The teacher map is detached. A student map of another spatial size is resized to the
    teacher's bilinearly (both trunks here reduce by 8, so sizes normally match).

    Args:
        student_map: ``A_S``, ``(N, h, w)``.
        teacher_map: ``A_T``, ``(N, h', w')``.
        weight: 0.1 as the paper.

    Returns:
        0-dim tensor.

    Raises:
        DensecalInputError: maps are not ``(N, h, w)`` with the same N.
    """
    if student_map.dim() != 3 or teacher_map.dim() != 3 or \
            student_map.shape[0] != teacher_map.shape[0]:
        raise input_error("uad_loss", f"expected (N, h, w) maps, got {tuple(student_map.shape)} "
                                      f"and {tuple(teacher_map.shape)}")
    if student_map.shape != teacher_map.shape:
        student_map = F.interpolate(student_map.unsqueeze(1), size=teacher_map.shape[1:],
                                    mode="bilinear", align_corners=False).squeeze(1)
    return weight * (student_map - teacher_map.detach()).pow(2).mean()
