"""MbLS, margin-based label smoothing, for dense binary and multi-class outputs.

Source: Liu et al., "The Devil is in the Margins: Margin-based Label Smoothing for Network
Calibration" (CVPR 2022), Eq. 8, and the official code github.com/by-liu/MbLS
(``calibrate/losses/logit_margin_l1.py``, class ``LogitMarginL1``); docs/methods.md section 2::

    MbLS = CE + lambda * mean_k max(0, max_j l_j - l_k - m),     m = 10, lambda = 0.1

on the logits ``l`` of a pixel, then averaged over pixels. The official code flattens the
logits to ``(N*H*W, C)`` and takes ``relu(diff - margin).mean()`` over that whole matrix: the
mean runs over pixels **and** all ``K`` classes (the arg-max class included, whose distance 0
adds 0 to the sum but 1 to the count). With a constant ``K`` this is the pixel mean of the
per-pixel class mean computed here. Differences from the official code:

- ignored pixels are left out of both terms; the official code drops them from the margin term
  only when ``ignore_index >= 0``, and its default ``-100`` (also in ``configs/loss``) keeps
  void pixels in the margin mean while ``nn.CrossEntropyLoss`` drops them from CE;
- soft targets (binary in ``(0, 1)``, probability maps) enter the CE term only; the margin term
  does not depend on the target.

**Binary** maps use the two-class logits ``[0, l]`` (whose softmax is ``[1 - q, q]``). The
alternative ``[-l/2, l/2]`` has the same logit distances, so the choice does not matter: the
per-pixel penalty is ``max(0, |l| - m) / 2`` and CE is the BCE.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from densecal._checks import check_number
from densecal.losses._common import (
    DenseLoss,
    Task,
    check_reduction,
    prepare,
    reduce_pixels,
)
from densecal.types import Reduction

__all__ = ["MbLSLoss", "margin_penalty", "mbls_loss"]


def margin_penalty(class_logits: Tensor, margin: float = 10.0) -> Tensor:
    """Per-pixel MbLS penalty ``mean_k max(0, max_j l_j - l_k - margin)``.

    Args:
        class_logits: logits ``(N, K, *S)`` with classes on axis 1.
        margin: ``m >= 0``.

    Returns:
        Penalty ``(N, *S)``.

    Example:
        >>> import torch
        >>> margin_penalty(torch.tensor([[12.0, 0.0, 1.0]]))  # hinge terms [0, 2, 1]
        tensor([1.])
    """
    distance = class_logits.amax(1, keepdim=True) - class_logits
    return F.relu(distance - margin).mean(1)


def mbls_loss(logits: Tensor, target: Tensor, margin: float = 10.0, lam: float = 0.1, *,
              task: Task | str | None = None, reduction: Reduction | str = "mean",
              ignore_index: float | None = None) -> Tensor:
    """Cross-entropy plus ``lam`` times the logit-margin hinge penalty (module docstring).

    Args:
        logits: binary ``(N, *S)`` / ``(N, 1, *S)`` (sigmoid) or multi-class ``(N, C, *S)``
            (softmax), floating point.
        target: binary map of the logits' shape in ``[0, 1]``; multi-class class-index map
            ``(N, *S)`` (integer) or probability map ``(N, C, *S)``.
        margin: ``m >= 0``, the logit distance tolerated without penalty.
        lam: weight ``lambda >= 0`` of the penalty (the official code's ``alpha``).
        task: ``"binary"``, ``"multiclass"`` or ``None`` (multi-class iff
            ``logits.shape[1] > 1``).
        reduction: ``"mean"`` (over non-ignored pixels), ``"sum"`` or ``"none"`` (per-pixel
            ``(N, *S)``, 0 at ignored pixels).
        ignore_index: target value of pixels to leave out (of both terms), or ``None``.

    Returns:
        Scalar loss, or per-pixel losses ``(N, *S)`` for ``reduction="none"``.

    Raises:
        DensecalInputError: bad ``margin``, ``lam``, task, reduction, logits or target.
    """
    margin = check_number("margin", margin, 0.0)
    lam = check_number("lam", lam, 0.0)
    check_reduction(reduction)
    d = prepare(logits, target, task, ignore_index)
    loss = d.cross_entropy(d.log_probs())
    if lam:
        loss = loss + lam * margin_penalty(d.class_logits(), margin)
    return reduce_pixels(loss, d.mask, reduction)


class MbLSLoss(DenseLoss):
    """Margin-based label smoothing as an ``nn.Module`` (see :func:`mbls_loss`).

    Args:
        margin: ``m >= 0``, default 10 (docs/methods.md section 2, official default).
        lam: penalty weight ``lambda >= 0``, default 0.1.
        task: ``"binary"``, ``"multiclass"`` or ``None`` (infer).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        ignore_index: target value of pixels to ignore.

    Raises:
        DensecalInputError: invalid option values.
    """

    def __init__(self, margin: float = 10.0, lam: float = 0.1, *,
                 task: Task | str | None = None, reduction: Reduction | str = "mean",
                 ignore_index: float | None = None) -> None:
        super().__init__(task, reduction, ignore_index)
        self.margin = check_number("margin", margin, 0.0)
        self.lam = check_number("lam", lam, 0.0)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of ``logits`` against ``target`` (shapes as in :func:`mbls_loss`)."""
        return mbls_loss(logits, target, self.margin, self.lam, **self.options())

    def extra_repr(self) -> str:
        return f"margin={self.margin}, lam={self.lam}, {super().extra_repr()}"
