"""Per-image Over-MAP analysis: prediction, max-softmax, Grad-CAM and overlap scores.

For each image the classifier's Grad-CAM ``H`` is taken twice: for the predicted class (the
confidence, docs/methods.md section 6) and for the labelled class (the training-set audit: a
misleading training image tends to have low overlap under its own label).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from densecal.data.transforms import image_to_tensor, resize
from densecal.errors import input_error
from densecal.overmap.gradcam import grad_cam, minmax_normalise
from densecal.overmap.scores import overlap_scores

__all__ = ["OvermapResult", "analyse_images"]


@dataclass
class OvermapResult:
    """Outputs of :func:`analyse_images` for ``N`` images.

    Attributes:
        probs: ``(N, C)`` float64 softmax probabilities.
        prediction: ``(N,)`` int64 argmax class.
        msp: ``(N,)`` float64 max-softmax probability.
        scores: ``{score name: (N,) float64}`` overlap of the predicted-class Grad-CAM with
            the mask (``attention_mass``, ``threshold_iou``, ``peak_in_mask``).
        label_scores: the same under the labelled class (empty when no labels were given).
        maps: predicted-class Grad-CAM maps ``(H, W)`` in [0, 1] of the first ``keep_maps``
            images.
        cam_empty: ``(N,)`` bool, the predicted class's Grad-CAM is all zero (its overlap
            scores are 0 by convention, not measured).
        label_cam_empty: the same for the labelled class (empty without labels).
    """

    probs: np.ndarray
    prediction: np.ndarray
    msp: np.ndarray
    scores: dict[str, np.ndarray]
    label_scores: dict[str, np.ndarray]
    maps: list[np.ndarray]
    cam_empty: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    label_cam_empty: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


def _cam_at(net: nn.Module, batch: torch.Tensor, target: torch.Tensor, layer: str | None,
            shapes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    maps = grad_cam(net, batch, target, layer=layer)
    out = []
    for h, shape in zip(maps, shapes, strict=True):
        if tuple(h.shape) != tuple(shape):
            h = F.interpolate(h[None, None], size=shape, mode="bilinear",
                              align_corners=False)[0]
            h = minmax_normalise(h)[0]
        out.append(h)
    return out


def analyse_images(net: nn.Module, images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                   image_size: int, labels: Sequence[int] | None = None, *,
                   layer: str | None = None, tau: float = 0.5, batch_size: int = 16,
                   keep_maps: int = 0) -> OvermapResult:
    """Run the classifier, Grad-CAM and the overlap scores over images.

    Args:
        net: classifier (eval mode) mapping ``(N, 3, S, S)`` in [0, 1] to logits ``(N, C)``.
        images: RGB ``(H, W, 3)`` uint8 images (resized to ``image_size`` for the network; the
            Grad-CAM is brought back to each image's size).
        masks: ``(H, W)`` bool object masks, one per image.
        image_size: network input side ``S``.
        labels: optional class index per image, for the audit scores.
        layer: Grad-CAM layer name (default ``net.target_layer``).
        tau: threshold of ``threshold_iou``.
        batch_size: images per pass.
        keep_maps: how many predicted-class maps to return (for figures).

    Returns:
        An :class:`OvermapResult`.

    Raises:
        DensecalInputError: mismatched counts or mask sizes.
    """
    if len(masks) != len(images) or (labels is not None and len(labels) != len(images)):
        raise input_error("masks", f"{len(images)} images, {len(masks)} masks"
                          + ("" if labels is None else f", {len(labels)} labels"))
    probs, pred_scores, label_scores, maps = [], [], [], []
    empty: list[bool] = []
    label_empty: list[bool] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        shapes = [im.shape[:2] for im in chunk]
        mask_t = [torch.as_tensor(np.asarray(m, bool)) for m in masks[start:start + batch_size]]
        for m, shape in zip(mask_t, shapes, strict=True):
            if tuple(m.shape) != tuple(shape):
                raise input_error("masks", f"a mask is {tuple(m.shape)}, its image {shape}")
        batch = torch.stack([resize(image_to_tensor(im), image_size) for im in chunk])
        with torch.no_grad():
            p = torch.softmax(net(batch).double(), 1)
        probs.append(p)
        pred = p.argmax(1)
        cams = _cam_at(net, batch, pred, layer, shapes)
        maps.extend(h.numpy() for h in cams[:max(0, keep_maps - len(maps))])
        pred_scores.extend(overlap_scores(h[None], m[None], tau)
                           for h, m in zip(cams, mask_t, strict=True))
        empty.extend(not bool(h.any()) for h in cams)
        if labels is not None:
            target = torch.as_tensor(np.asarray(labels[start:start + batch_size], np.int64))
            cams = _cam_at(net, batch, target, layer, shapes)
            label_scores.extend(overlap_scores(h[None], m[None], tau)
                                for h, m in zip(cams, mask_t, strict=True))
            label_empty.extend(not bool(h.any()) for h in cams)
    p_all = torch.cat(probs).numpy() if probs else np.zeros((0, 0))

    def stack(rows: list[dict[str, torch.Tensor]]) -> dict[str, np.ndarray]:
        if not rows:
            return {}
        return {k: torch.cat([r[k] for r in rows]).numpy() for k in rows[0]}

    return OvermapResult(probs=p_all, prediction=p_all.argmax(1), msp=p_all.max(1),
                         scores=stack(pred_scores), label_scores=stack(label_scores), maps=maps,
                         cam_empty=np.array(empty, bool), label_cam_empty=np.array(label_empty,
                                                                                  bool))
