"""Label smoothing (LS) for dense binary and multi-class outputs.

Source: Szegedy et al., "Rethinking the Inception Architecture for Computer Vision" (CVPR 2016),
Sec. 7; docs/methods.md section 2. The smoothed target of a pixel with ``K`` classes is::

    t_eps = (1 - eps) t + eps / K        (binary, K = 2: y -> (1 - eps) y + eps / 2)

and the loss is the cross-entropy ``-sum_c t_eps,c log p_c``, computed without building
``t_eps`` as ``(1 - eps) CE(t) + eps * mean_c(-log p_c)`` (CE is linear in the target). The
binary form equals SC-BCE with ``alpha = 1, beta = eps``
(:meth:`densecal.losses.SCBCELoss.label_smoothing`).
"""

from __future__ import annotations

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

__all__ = ["LabelSmoothingLoss", "label_smoothing_loss"]


def label_smoothing_loss(logits: Tensor, target: Tensor, eps: float = 0.1, *,
                         task: Task | str | None = None, reduction: Reduction | str = "mean",
                         ignore_index: float | None = None) -> Tensor:
    """Cross-entropy against the smoothed target ``(1 - eps) t + eps / K``.

    Args:
        logits: binary ``(N, *S)`` / ``(N, 1, *S)`` (sigmoid) or multi-class ``(N, C, *S)``
            (softmax), floating point.
        target: binary map of the logits' shape in ``[0, 1]``; multi-class class-index map
            ``(N, *S)`` (integer) or probability map ``(N, C, *S)``.
        eps: smoothing factor in ``[0, 1]``; 0 gives plain CE / BCE.
        task: ``"binary"``, ``"multiclass"`` or ``None`` (multi-class iff
            ``logits.shape[1] > 1``; see :mod:`densecal.losses._common`).
        reduction: ``"mean"`` (over non-ignored pixels), ``"sum"`` or ``"none"`` (per-pixel
            ``(N, *S)``, 0 at ignored pixels).
        ignore_index: target value of pixels to leave out, or ``None``.

    Returns:
        Scalar loss, or per-pixel losses ``(N, *S)`` for ``reduction="none"``.

    Raises:
        DensecalInputError: bad ``eps``, task, reduction, logits or target.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0, 0.0]])  # one pixel, two classes, p = (1/2, 1/2)
        >>> round(label_smoothing_loss(x, torch.tensor([0])).item(), 6)  # ln 2 for any eps
        0.693147
    """
    eps = check_number("eps", eps, 0.0, 1.0)
    check_reduction(reduction)
    d = prepare(logits, target, task, ignore_index)
    logp = d.log_probs()
    loss = d.cross_entropy(logp)
    if eps:
        loss = (1.0 - eps) * loss - eps * logp.mean(1)
    return reduce_pixels(loss, d.mask, reduction)


class LabelSmoothingLoss(DenseLoss):
    """Label smoothing as an ``nn.Module`` (see :func:`label_smoothing_loss`).

    Args:
        eps: smoothing factor in ``[0, 1]``, default 0.1 (docs/methods.md section 2).
        task: ``"binary"``, ``"multiclass"`` or ``None`` (infer).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        ignore_index: target value of pixels to ignore.

    Raises:
        DensecalInputError: invalid option values.
    """

    def __init__(self, eps: float = 0.1, *, task: Task | str | None = None,
                 reduction: Reduction | str = "mean", ignore_index: float | None = None) -> None:
        super().__init__(task, reduction, ignore_index)
        self.eps = check_number("eps", eps, 0.0, 1.0)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of ``logits`` against ``target`` (shapes as in :func:`label_smoothing_loss`)."""
        return label_smoothing_loss(logits, target, self.eps, **self.options())

    def extra_repr(self) -> str:
        return f"eps={self.eps}, {super().extra_repr()}"
