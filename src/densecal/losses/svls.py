"""SVLS, spatially varying label smoothing, for dense binary and multi-class outputs (1-3-D).

Source: Islam & Glocker, "Spatially Varying Label Smoothing: Capturing Uncertainty from Expert
Annotations" (IPMI 2021), and the official code github.com/mobarakol/SVLS (``svls.py``:
``get_svls_filter_3d`` and ``CELossWithSVLS``; ``SVLS_2D.ipynb``: ``get_svls_filter_2d``);
docs/methods.md section 2.

Soft target: the one-hot map convolved depthwise (each class separately, replicate padding) with
a fixed ``k^d`` kernel built from a Gaussian ``g`` (``sigma = 1``, ``k = 3``) whose centre is
replaced so that the centre keeps weight 1/2 and the neighbours share 1/2 in proportion to ``g``::

    w_centre = 1/2,     w_i = (1/2) g_i / sum_{j != centre} g_j

(the official code normalises ``g`` to sum 1, sets the centre to ``1 - g_centre``, divides by it
and then divides the convolution by the kernel sum 2 -- the same numbers). 2-D, ``sigma = 1``:
side neighbours 0.0778, diagonal ones 0.0472. The loss is ``-mean_pixels sum_c q_c log p_c``.

densecal's choices beyond the official code (which handles 3-D ``k = 3`` volumes, or the 2-D
notebook, with hard labels and no ignore index):

- any spatial rank 1-3 and odd ``k >= 3`` (the official centre index is hard-coded for k = 3);
- **multi-rater**: a stack ``(N, R, *S)`` (integer) or a list of ``R`` class-index maps; the
  raters' one-hot maps are averaged before smoothing (binary: a list of maps is averaged);
  probability maps ``(N, C, *S)`` are smoothed as given (the convolution is linear);
- **binary**: the two-channel map ``[1 - y, y]`` is smoothed and the loss is the BCE against the
  smoothed foreground channel (soft ``y`` allowed);
- **ignored pixels** (``ignore_index``) are left out of the loss and also out of the smoothing:
  the convolution is normalised by the convolved mask of labelled pixels (normalised
  convolution), so an ignored pixel lends no class to its neighbours and a labelled pixel's
  weights are redistributed over its labelled neighbours (its own weight 1/2 always counts).
  With several raters, a pixel is labelled where at least one rater labels it and averages the
  raters that do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from densecal._checks import check_int, check_number
from densecal.errors import input_error
from densecal.losses._common import (
    DenseInput,
    DenseLoss,
    Task,
    binary_target,
    check_reduction,
    index_target,
    probability_target,
    reduce_pixels,
    task_logits,
)
from densecal.types import Reduction

__all__ = ["SVLSLoss", "svls_kernel", "svls_loss", "svls_smooth"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _check_kernel_options(kernel_size: int, sigma: float) -> float:
    check_int("kernel_size", kernel_size, low=3, odd=True, problem="must be an odd integer >= 3")
    return check_number("sigma", sigma, 0.0, low_open=True)


def svls_kernel(spatial_dims: int, kernel_size: int = 3, sigma: float = 1.0, *,
                dtype: torch.dtype = torch.float64,
                device: torch.device | str | None = None) -> Tensor:
    """The SVLS kernel: centre 1/2, neighbours sharing 1/2 in proportion to a Gaussian.

    Args:
        spatial_dims: number of spatial axes, 1 to 3.
        kernel_size: odd side ``k >= 3``.
        sigma: Gaussian standard deviation ``> 0`` in pixels.
        dtype: dtype of the result (computed in float64).
        device: device of the result.

    Returns:
        Kernel of shape ``(k,) * spatial_dims`` summing to 1.

    Raises:
        DensecalInputError: bad ``spatial_dims``, ``kernel_size`` or ``sigma``.

    Example:
        >>> k = svls_kernel(2)
        >>> [round(v, 4) for v in (k[1, 1].item(), k[0, 1].item(), k[0, 0].item())]
        [0.5, 0.0778, 0.0472]
    """
    if spatial_dims not in _CONV:
        raise input_error("spatial_dims", f"must be 1, 2 or 3, got {spatial_dims!r}")
    sigma = _check_kernel_options(kernel_size, sigma)
    half = kernel_size // 2
    offset = torch.arange(-half, half + 1, dtype=torch.float64)
    grids = torch.meshgrid(*([offset] * spatial_dims), indexing="ij")
    gauss = torch.exp(-sum(g * g for g in grids) / (2.0 * sigma * sigma))
    centre = (half,) * spatial_dims
    gauss[centre] = 0.0
    kernel = gauss * (0.5 / gauss.sum())
    kernel[centre] = 0.5
    return kernel.to(dtype=dtype, device=device)


def svls_smooth(probs: Tensor, valid: Tensor | None = None, kernel_size: int = 3,
                sigma: float = 1.0) -> Tensor:
    """Smooth a class-probability (e.g. one-hot) map with the SVLS kernel, replicate padding.

    Args:
        probs: ``(N, K, *S)`` with 1 to 3 spatial axes, floating point.
        valid: optional boolean map ``(N, *S)`` of labelled pixels; the convolution is then
            normalised by the convolved mask (unlabelled pixels contribute nothing; where no
            labelled pixel is in reach the result is 0).
        kernel_size: odd side ``k >= 3``.
        sigma: Gaussian standard deviation ``> 0``.

    Returns:
        Smoothed map of ``probs``' shape; each pixel still sums to 1 where ``probs`` does.

    Raises:
        DensecalInputError: bad shape or kernel options.

    Example:
        >>> onehot = torch.zeros(1, 2, 3, 3)
        >>> onehot[0, 0] = 1.0
        >>> onehot[0, :, 1, 1] = torch.tensor([0.0, 1.0])  # one class-1 pixel in class 0
        >>> svls_smooth(onehot)[0, 1, 1, 1].item()  # the centre keeps 1/2 of its class
        0.5
    """
    if not isinstance(probs, Tensor) or not probs.is_floating_point() or probs.ndim - 2 not in \
            _CONV:
        raise input_error("probs", "must be a floating tensor (N, K, *spatial) with 1 to 3 "
                                   "spatial axes")
    dims = probs.ndim - 2
    kernel = svls_kernel(dims, kernel_size, sigma, dtype=probs.dtype, device=probs.device)
    weight = kernel.view(1, 1, *kernel.shape)
    pad = [kernel_size // 2] * (2 * dims)

    def conv(x: Tensor) -> Tensor:
        flat = x.reshape(-1, 1, *x.shape[2:])
        out = _CONV[dims](F.pad(flat, pad, mode="replicate"), weight)
        return out.view(x.shape)

    if valid is None:
        return conv(probs)
    if valid.shape != probs.shape[:1] + probs.shape[2:]:
        raise input_error("valid", f"shape {tuple(valid.shape)} does not match probs "
                                   f"{tuple(probs.shape)} without its class axis")
    w = valid.unsqueeze(1).to(probs.dtype)
    num = conv(probs * w)
    den = conv(w)
    return num / den.clamp_min(torch.finfo(probs.dtype).tiny)  # num = 0 wherever den = 0


def _average_raters(probs: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Average per-rater maps ``(N, R, K, *S)`` over the raters labelling each pixel."""
    if mask is None:
        return probs.mean(1), None
    m = mask.unsqueeze(2).to(probs.dtype)
    count = m.sum(1)
    return (probs * m).sum(1) / count.clamp_min(1), count.squeeze(1) > 0


def _svls_target(task: Task, logits: Tensor, target: Tensor | Sequence[Tensor],
                 ignore_index: float | None) -> tuple[Tensor, Tensor | None]:
    """Target distribution ``(N, K, *S)`` before smoothing, and the labelled-pixel mask."""
    if task is Task.BINARY:
        maps = list(target) if isinstance(target, (list, tuple)) else [target]
        if not maps:
            raise input_error("target", "an empty list of rater maps")
        ys, masks = zip(*(binary_target(logits, t, ignore_index) for t in maps), strict=True)
        y = torch.stack(ys, 1)
        mask = None if ignore_index is None else torch.stack(masks, 1)  # type: ignore[arg-type]
        return _average_raters(torch.stack((1 - y, y), 2), mask)
    n, c, spatial = logits.shape[0], logits.shape[1], logits.shape[2:]
    if isinstance(target, (list, tuple)):
        if not target or not all(isinstance(t, Tensor) for t in target):
            raise input_error("target", "a list of raters must hold one or more tensors")
        if any(t.shape != (n, *spatial) for t in target):
            raise input_error("target", f"every rater's map must have shape {(n, *spatial)}")
        target = torch.stack(list(target), 1)
    if not isinstance(target, Tensor):
        raise input_error("target", "must be a tensor or a list of tensors")
    if target.shape == (n, *spatial):
        target = target.unsqueeze(1)  # one rater
    elif target.shape == logits.shape and target.is_floating_point():
        return probability_target(target, logits.dtype, ignore_index)
    if target.ndim != logits.ndim or target.shape[:1] != (n,) or target.shape[2:] != spatial:
        raise input_error("target", f"shape {tuple(target.shape)} fits none of a class-index map "
                                    f"{(n, *spatial)}, a rater stack (N, R, *spatial) or a "
                                    f"probability map {tuple(logits.shape)}")
    index, mask = index_target(target, c, ignore_index)
    onehot = F.one_hot(index, c).movedim(-1, 2).to(logits.dtype)  # (N, R, C, *S)
    return _average_raters(onehot, mask)


def svls_loss(logits: Tensor, target: Tensor | Sequence[Tensor], kernel_size: int = 3,
              sigma: float = 1.0, *, task: Task | str | None = None,
              reduction: Reduction | str = "mean",
              ignore_index: float | None = None) -> Tensor:
    """Cross-entropy against the SVLS-smoothed target (module docstring).

    Args:
        logits: binary ``(N, *S)`` / ``(N, 1, *S)`` (sigmoid) or multi-class ``(N, C, *S)``
            (softmax), floating point, with 1 to 3 spatial axes ``S``.
        target: binary: a map of the logits' shape in ``[0, 1]`` or a list of such maps (raters,
            averaged). Multi-class: a class-index map ``(N, *S)``, a rater stack
            ``(N, R, *S)`` (integer) or list of ``R`` index maps (one-hots averaged), or a
            probability map ``(N, C, *S)`` (floating).
        kernel_size: odd side ``k >= 3`` of the kernel.
        sigma: Gaussian standard deviation ``> 0`` in pixels.
        task: ``"binary"``, ``"multiclass"`` or ``None`` (multi-class iff
            ``logits.shape[1] > 1``).
        reduction: ``"mean"`` (over labelled pixels), ``"sum"`` or ``"none"`` (per-pixel
            ``(N, *S)``, 0 at ignored pixels).
        ignore_index: target value of pixels to leave out of the loss and the smoothing.

    Returns:
        Scalar loss, or per-pixel losses ``(N, *S)`` for ``reduction="none"``.

    Raises:
        DensecalInputError: bad kernel options, task, reduction, logits or target.
    """
    _check_kernel_options(kernel_size, sigma)
    check_reduction(reduction)
    parsed, logits = task_logits(logits, task)
    dims = logits.ndim - (1 if parsed is Task.BINARY else 2)
    if not 1 <= dims <= 3:
        raise input_error("logits", f"SVLS needs 1 to 3 spatial axes, got shape "
                                    f"{tuple(logits.shape)} read as {parsed.value}")
    probs, mask = _svls_target(parsed, logits, target, ignore_index)
    soft = svls_smooth(probs, mask, kernel_size, sigma)
    d = DenseInput(parsed, logits, None, soft, mask)
    return reduce_pixels(d.cross_entropy(d.log_probs()), mask, reduction)


class SVLSLoss(DenseLoss):
    """Spatially varying label smoothing as an ``nn.Module`` (see :func:`svls_loss`).

    Args:
        kernel_size: odd side ``k >= 3``, default 3 (docs/methods.md section 2).
        sigma: Gaussian standard deviation ``> 0``, default 1.
        task: ``"binary"``, ``"multiclass"`` or ``None`` (infer).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        ignore_index: target value of pixels to ignore.

    Raises:
        DensecalInputError: invalid option values.
    """

    def __init__(self, kernel_size: int = 3, sigma: float = 1.0, *,
                 task: Task | str | None = None, reduction: Reduction | str = "mean",
                 ignore_index: float | None = None) -> None:
        super().__init__(task, reduction, ignore_index)
        self.sigma = _check_kernel_options(kernel_size, sigma)
        self.kernel_size = kernel_size

    def forward(self, logits: Tensor, target: Tensor | Sequence[Tensor]) -> Tensor:
        """Loss of ``logits`` against ``target`` (shapes as in :func:`svls_loss`)."""
        return svls_loss(logits, target, self.kernel_size, self.sigma, **self.options())

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, sigma={self.sigma}, {super().extra_repr()}"
