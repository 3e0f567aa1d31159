"""Entropy confidence penalty (ECP) for dense binary and multi-class outputs.

Source: Pereyra et al., "Regularizing Neural Networks by Penalizing Confident Output
Distributions" (ICLR workshop 2017), Eq. 2; docs/methods.md section 2::

    ECP = CE - beta_H * H(p),      H(p) = -sum_c p_c log p_c  (natural log),  beta_H = 0.1

per pixel (binary: the Bernoulli entropy ``-q log q - (1 - q) log(1 - q)``). Note: the MbLS
repository's ``calibrate/losses/penalty_entropy.py`` averages ``-p log p`` over the classes as
well as the pixels (``ent.mean()``), i.e. it uses ``H / K``; densecal follows the paper and
docs/methods.md section 2 (the full per-pixel entropy), so ``beta_H`` here equals that code's
``alpha / K``.
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

__all__ = ["EntropyPenaltyLoss", "entropy_penalty_loss"]


def entropy_penalty_loss(logits: Tensor, target: Tensor, beta_h: float = 0.1, *,
                         task: Task | str | None = None, reduction: Reduction | str = "mean",
                         ignore_index: float | None = None) -> Tensor:
    """Cross-entropy minus ``beta_h`` times the per-pixel predictive entropy.

    Args:
        logits: binary ``(N, *S)`` / ``(N, 1, *S)`` (sigmoid) or multi-class ``(N, C, *S)``
            (softmax), floating point.
        target: binary map of the logits' shape in ``[0, 1]``; multi-class class-index map
            ``(N, *S)`` (integer) or probability map ``(N, C, *S)``.
        beta_h: entropy weight ``>= 0``.
        task: ``"binary"``, ``"multiclass"`` or ``None`` (multi-class iff
            ``logits.shape[1] > 1``).
        reduction: ``"mean"`` (over non-ignored pixels), ``"sum"`` or ``"none"`` (per-pixel
            ``(N, *S)``, 0 at ignored pixels).
        ignore_index: target value of pixels to leave out, or ``None``.

    Returns:
        Scalar loss, or per-pixel losses ``(N, *S)`` for ``reduction="none"``.

    Raises:
        DensecalInputError: bad ``beta_h``, task, reduction, logits or target.

    Example:
        >>> import torch
        >>> x = torch.zeros(1, 2)  # p = (1/2, 1/2): CE = H = ln 2
        >>> round(entropy_penalty_loss(x, torch.tensor([1])).item(), 6)  # 0.9 ln 2
        0.623832
    """
    beta_h = check_number("beta_h", beta_h, 0.0)
    check_reduction(reduction)
    d = prepare(logits, target, task, ignore_index)
    logp = d.log_probs()
    entropy = -(logp.exp() * logp).sum(1)
    return reduce_pixels(d.cross_entropy(logp) - beta_h * entropy, d.mask, reduction)


class EntropyPenaltyLoss(DenseLoss):
    """Entropy confidence penalty as an ``nn.Module`` (see :func:`entropy_penalty_loss`).

    Args:
        beta_h: entropy weight ``>= 0``, default 0.1 (docs/methods.md section 2).
        task: ``"binary"``, ``"multiclass"`` or ``None`` (infer).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        ignore_index: target value of pixels to ignore.

    Raises:
        DensecalInputError: invalid option values.
    """

    def __init__(self, beta_h: float = 0.1, *, task: Task | str | None = None,
                 reduction: Reduction | str = "mean", ignore_index: float | None = None) -> None:
        super().__init__(task, reduction, ignore_index)
        self.beta_h = check_number("beta_h", beta_h, 0.0)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of ``logits`` against ``target`` (shapes as in :func:`entropy_penalty_loss`)."""
        return entropy_penalty_loss(logits, target, self.beta_h, **self.options())

    def extra_repr(self) -> str:
        return f"beta_h={self.beta_h}, {super().extra_repr()}"
