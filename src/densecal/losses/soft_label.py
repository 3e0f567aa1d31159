"""Soft-label losses: the KL divergence to a per-pixel target distribution.

The stage-2 loss of CALSeg's variational label smoothing (Guo et al., ICASSP 2024): a plain
segmentation network trained with the pixel-mean ``KL(Y_s || softmax(logits))`` to cached soft
labels ``Y_s`` (``docs/methods.md``, CALSeg), and the one-hot maps soft labels are mixed with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from densecal.errors import input_error
from densecal.losses._common import DenseLoss, check_reduction, prepare, reduce_pixels
from densecal.types import Reduction

__all__ = ["SoftLabelKLLoss", "one_hot_labels", "soft_label_kl"]


def one_hot_labels(labels: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """One-hot map ``(N, K, *S)`` float32 of class indices ``(N, *S)``; ignored pixels all-zero.

    Raises:
        DensecalInputError: a label outside ``0..K-1`` that is not ``ignore_index``.
    """
    valid = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None \
        else labels != ignore_index
    index = torch.where(valid, labels, 0).long()
    if index.numel() and (index.min() < 0 or index.max() >= num_classes):
        raise input_error("labels", f"class indices must lie in [0, {num_classes}) or equal "
                                    f"ignore_index={ignore_index!r}")
    onehot = F.one_hot(index, num_classes).movedim(-1, 1).float()
    return onehot * valid.unsqueeze(1)


def soft_label_kl(logits: Tensor, target: Tensor, *, reduction: Reduction | str = "mean",
                  ignore_index: float | None = None) -> Tensor:
    """Pixel-wise ``KL(t || softmax(logits)) = sum_k t_k (log t_k - log p_k)`` (``0 log 0 = 0``),
    the stage-2 loss of VLS (``docs/methods.md``, CALSeg).

    Its gradient in the logits is that of the cross entropy ``-sum_k t_k log p_k`` (the target
    entropy is a constant); the value is 0 exactly when ``p = t``.

    Args:
        logits: ``(N, K, *S)`` floating, ``K >= 2``.
        target: ``(N, K, *S)`` probability map (each pixel sums to 1); a pixel whose every
            channel equals ``ignore_index`` is ignored.
        reduction: ``"mean"`` (over kept pixels), ``"sum"`` or ``"none"`` (``(N, *S)``).
        ignore_index: marker of ignored pixels, or ``None``.

    Returns:
        Scalar, or per-pixel ``(N, *S)`` values for ``reduction="none"`` (0 at ignored pixels).

    Raises:
        DensecalInputError: class-index targets (VLS needs its soft labels), shape mismatch,
            values outside [0, 1] or not summing to 1.

    Example:
        >>> x = torch.zeros(1, 2, 1, 1)  # p = (1/2, 1/2), t = (1, 0): KL = log 2
        >>> round(soft_label_kl(x, torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)).item(), 6)
        0.693147
    """
    check_reduction(reduction)
    if isinstance(target, Tensor) and not target.is_floating_point():
        raise input_error("target", "vls trains on soft labels (N, K, *S); got a class-index "
                                    "map (the batch lacks its cached 'soft' target)")
    dense = prepare(logits, target, "multiclass", ignore_index)
    probs = dense.probs
    assert probs is not None  # floating targets of the logits' shape are probability maps
    pixel = (torch.xlogy(probs, probs) - probs * F.log_softmax(dense.logits, 1)).sum(1)
    return reduce_pixels(pixel, dense.mask, reduction)


class SoftLabelKLLoss(DenseLoss):
    """Module form of :func:`soft_label_kl` (multi-class only).

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        ignore_index: marker of ignored pixels in the probability target, or ``None``.
    """

    def __init__(self, reduction: Reduction | str = "mean",
                 ignore_index: float | None = None) -> None:
        super().__init__(task="multiclass", reduction=reduction, ignore_index=ignore_index)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """See :func:`soft_label_kl`."""
        return soft_label_kl(logits, target, reduction=self.reduction,
                             ignore_index=self.ignore_index)
