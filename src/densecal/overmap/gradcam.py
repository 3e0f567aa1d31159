"""Grad-CAM maps through captum's ``LayerGradCam``, upsampled and min-max normalised.

Grad-CAM (Selvaraju et al., ICCV 2017, eq. 1-2): for class ``c`` and feature maps ``A_k`` of a
layer, channel weights ``w_k = mean_{i,j} dy_c / dA_k[i, j]`` and the map
``ReLU(sum_k w_k A_k)``. captum computes exactly this (``LayerGradCam.attribute`` with
``relu_attributions=True``); densecal then upsamples bilinearly to the input size
(``align_corners=False``) and min-max normalises each map to [0, 1] (docs/methods.md section 6). A
constant map (e.g. all zero after the ReLU) normalises to all zeros.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densecal.errors import input_error

__all__ = ["grad_cam", "minmax_normalise", "resolve_layer"]


def _layer_grad_cam() -> Any:
    try:
        from captum.attr import LayerGradCam
    except ImportError:  # pragma: no cover - depends on the environment
        raise input_error("captum", 'Grad-CAM needs captum: pip install "densecal[gradcam]"'
                          ) from None
    return LayerGradCam


def resolve_layer(model: nn.Module, layer: str | nn.Module | None) -> nn.Module:
    """The Grad-CAM layer: ``model.target_layer`` when ``layer`` is None, a submodule given by
    its dotted name (``"trunk.5"``), or the module itself.

    Raises:
        DensecalInputError: no such submodule, or None on a model without ``target_layer``.
    """
    if isinstance(layer, nn.Module):
        return layer
    if layer is None:
        target = getattr(model, "target_layer", None)
        if not isinstance(target, nn.Module):
            raise input_error("layer", "the model has no target_layer; name a layer")
        return target
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n][:12]
        raise input_error("layer", f"no submodule {layer!r} (e.g. {', '.join(names)})") from None


def minmax_normalise(maps: Tensor) -> Tensor:
    """Min-max normalise each map of ``(N, H, W)`` to [0, 1]; constant maps become zeros."""
    flat = maps.flatten(1)
    lo = flat.min(1).values[:, None, None]
    span = (flat.max(1).values[:, None, None] - lo)
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (maps - lo) / safe, torch.zeros_like(maps))


def grad_cam(model: nn.Module, images: Tensor, target: Tensor | None = None, *,
             layer: str | nn.Module | None = None, normalise: bool = True) -> Tensor:
    """Grad-CAM of ``target`` classes (default: the predicted ones) at the image resolution.

    Args:
        model: classifier mapping ``(N, 3, H, W)`` to logits ``(N, C)``; used in its current
            mode (put it in eval mode first so batch norm uses running statistics).
        images: ``(N, 3, H, W)`` float batch.
        target: ``(N,)`` int64 class per image; None = ``argmax`` of the logits.
        layer: Grad-CAM layer (see :func:`resolve_layer`); default ``model.target_layer``.
        normalise: min-max normalise each map (docs/methods.md section 6); False keeps the raw
            upsampled ``ReLU(sum_k w_k A_k)``.

    Returns:
        ``(N, H, W)`` float32 maps, in [0, 1] when ``normalise``.

    Raises:
        DensecalInputError: captum missing, bad layer, or ``target`` of the wrong shape.
    """
    cam = _layer_grad_cam()(model, resolve_layer(model, layer))
    if target is None:
        with torch.no_grad():
            target = model(images).argmax(1)
    if target.shape != images.shape[:1]:
        raise input_error("target", f"expected shape ({images.shape[0]},), got "
                                    f"{tuple(target.shape)}")
    with torch.enable_grad():
        maps = cam.attribute(images, target=target.tolist(), relu_attributions=True)
    maps = F.interpolate(maps.detach().float(), size=images.shape[-2:], mode="bilinear",
                         align_corners=False)[:, 0]
    return minmax_normalise(maps) if normalise else maps
