"""Focal loss for dense binary and multi-class outputs.

Source: Lin et al., "Focal Loss for Dense Object Detection" (ICCV 2017), Eq. 4 without the
class weight ``alpha``; used for calibration by Mukhoti et al., "Calibrating Deep Neural Networks
using Focal Loss" (NeurIPS 2020). docs/methods.md section 2::

    FL = -(1 - p_t)^gamma log p_t,        gamma = 3 by default, gamma = 0 is CE / BCE

``p_t`` is the predicted probability of the target class (binary: ``q`` on a foreground pixel,
``1 - q`` on a background pixel). **Soft targets** (binary ``y`` in ``(0, 1)``, multi-class
probability maps) use the target-weighted sum of the per-class terms::

    FL = -sum_c t_c (1 - p_c)^gamma log p_c     (binary: -y (1-q)^g log q - (1-y) q^g log(1-q))

which is linear in the target (like CE) and equals the hard form on one-hot targets.
``log p`` comes from log-softmax / log-sigmoid and ``1 - p = -expm1(log p)``, so the loss is
finite for any finite logits.
"""

from __future__ import annotations

import torch
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

__all__ = ["FocalLoss", "focal_loss"]


def focal_loss(logits: Tensor, target: Tensor, gamma: float = 3.0, *,
               task: Task | str | None = None, reduction: Reduction | str = "mean",
               ignore_index: float | None = None) -> Tensor:
    """Focal loss ``-(1 - p_t)^gamma log p_t`` per pixel (soft targets: module docstring).

    Args:
        logits: binary ``(N, *S)`` / ``(N, 1, *S)`` (sigmoid) or multi-class ``(N, C, *S)``
            (softmax), floating point.
        target: binary map of the logits' shape in ``[0, 1]``; multi-class class-index map
            ``(N, *S)`` (integer) or probability map ``(N, C, *S)``.
        gamma: focusing parameter ``>= 0``; 0 gives CE / BCE exactly.
        task: ``"binary"``, ``"multiclass"`` or ``None`` (multi-class iff
            ``logits.shape[1] > 1``).
        reduction: ``"mean"`` (over non-ignored pixels), ``"sum"`` or ``"none"`` (per-pixel
            ``(N, *S)``, 0 at ignored pixels).
        ignore_index: target value of pixels to leave out, or ``None``.

    Returns:
        Scalar loss, or per-pixel losses ``(N, *S)`` for ``reduction="none"``.

    Raises:
        DensecalInputError: bad ``gamma``, task, reduction, logits or target.

    Example:
        >>> import torch
        >>> x = torch.zeros(1, 1)  # q = 1/2, foreground: (1/2)^2 ln 2
        >>> round(focal_loss(x, torch.ones(1, 1), gamma=2.0).item(), 6)
        0.173287
    """
    gamma = check_number("gamma", gamma, 0.0)
    check_reduction(reduction)
    d = prepare(logits, target, task, ignore_index)
    logp = d.log_probs()
    if gamma == 0.0:
        loss = d.cross_entropy(logp)
    elif d.index is not None:
        logp_t = logp.gather(1, d.index.unsqueeze(1)).squeeze(1)
        loss = -torch.pow(-torch.expm1(logp_t), gamma) * logp_t
    else:
        assert d.probs is not None
        loss = -(d.probs * torch.pow(-torch.expm1(logp), gamma) * logp).sum(1)
    return reduce_pixels(loss, d.mask, reduction)


class FocalLoss(DenseLoss):
    """Focal loss as an ``nn.Module`` (see :func:`focal_loss`).

    Args:
        gamma: focusing parameter ``>= 0``, default 3 (docs/methods.md section 2).
        task: ``"binary"``, ``"multiclass"`` or ``None`` (infer).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        ignore_index: target value of pixels to ignore.

    Raises:
        DensecalInputError: invalid option values.
    """

    def __init__(self, gamma: float = 3.0, *, task: Task | str | None = None,
                 reduction: Reduction | str = "mean", ignore_index: float | None = None) -> None:
        super().__init__(task, reduction, ignore_index)
        self.gamma = check_number("gamma", gamma, 0.0)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of ``logits`` against ``target`` (shapes as in :func:`focal_loss`)."""
        return focal_loss(logits, target, self.gamma, **self.options())

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, {super().extra_repr()}"
