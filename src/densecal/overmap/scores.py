"""Overlap scores between an attention map ``H`` and a binary object mask ``M``.

densecal's definitions (docs/methods.md section 6; the Over-MAP abstract, Kantor et al., AAAI 2021,
gives none):

- ``attention_mass`` (default): ``OM = sum(H * M) / sum(H)``, the fraction of the attention
  inside the object; 0 when ``sum(H) = 0`` (no attention at all).
- ``threshold_iou``: IoU of ``{H >= tau}`` with ``M`` (``tau = 0.5``); 0 when the union is empty.
- ``peak_in_mask``: 1 if the pixel of maximal ``H`` is in ``M`` (first maximum in row-major
  order), else 0; 0 when ``H`` is all zero.

All take ``H`` ``(N, H, W)`` (values >= 0, typically min-max normalised to [0, 1]) and ``M``
``(N, H, W)`` (bool, or values in [0, 1] binarised at 0.5) and return ``(N,)`` float64 scores in
[0, 1].

Example:
    >>> import torch
    >>> h = torch.tensor([[[1.0, 0.5], [0.25, 0.25]]])
    >>> m = torch.tensor([[[True, False], [False, True]]])
    >>> attention_mass(h, m).tolist(), threshold_iou(h, m).tolist(), peak_in_mask(h, m).tolist()
    ([0.625], [0.3333333333333333], [1.0])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from densecal.errors import input_error
from densecal.types import StrEnum

__all__ = ["SCORES", "OverlapScore", "attention_mass", "overlap_scores", "peak_in_mask",
           "threshold_iou"]


def _prepare(h: Tensor, m: Tensor) -> tuple[Tensor, Tensor]:
    if h.ndim != 3 or h.shape != m.shape:
        raise input_error("mask", f"expected maps and masks of the same (N, H, W) shape, got "
                                  f"{tuple(h.shape)} and {tuple(m.shape)}")
    if bool((h < 0).any()):
        raise input_error("attention", "maps must be non-negative")
    mask = m if m.dtype == torch.bool else m >= 0.5
    return h.double().flatten(1), mask.flatten(1)


def attention_mass(h: Tensor, m: Tensor) -> Tensor:
    """``sum(H * M) / sum(H)`` per image (0 where ``sum(H) = 0``)."""
    hf, mf = _prepare(h, m)
    total = hf.sum(1)
    inside = (hf * mf).sum(1)
    return torch.where(total > 0, inside / torch.where(total > 0, total, 1.0), 0.0)


def threshold_iou(h: Tensor, m: Tensor, tau: float = 0.5) -> Tensor:
    """IoU of ``{H >= tau}`` with ``M`` per image (0 where the union is empty)."""
    hf, mf = _prepare(h, m)
    hot = hf >= tau
    inter = (hot & mf).sum(1).double()
    union = (hot | mf).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), 0.0)


def peak_in_mask(h: Tensor, m: Tensor) -> Tensor:
    """1 where the first maximum of ``H`` lies in ``M`` (0 for an all-zero ``H``)."""
    hf, mf = _prepare(h, m)
    hit = mf.gather(1, hf.argmax(1, keepdim=True))[:, 0]
    return (hit & (hf.amax(1) > 0)).double()


class OverlapScore(StrEnum):
    """The Over-MAP score (``--score``); ``ATTENTION_MASS`` is the default."""

    ATTENTION_MASS = "attention_mass"
    THRESHOLD_IOU = "threshold_iou"
    PEAK_IN_MASK = "peak_in_mask"


SCORES: dict[str, Callable[..., Tensor]] = {
    OverlapScore.ATTENTION_MASS.value: attention_mass,
    OverlapScore.THRESHOLD_IOU.value: threshold_iou,
    OverlapScore.PEAK_IN_MASK.value: peak_in_mask,
}
"""Score name -> function; ``attention_mass`` is Over-MAP's default."""


def overlap_scores(h: Tensor, m: Tensor, tau: float = 0.5) -> dict[str, Tensor]:
    """All three scores, ``{name: (N,) float64}`` (see :data:`SCORES`)."""
    return {"attention_mass": attention_mass(h, m), "threshold_iou": threshold_iou(h, m, tau),
            "peak_in_mask": peak_in_mask(h, m)}
