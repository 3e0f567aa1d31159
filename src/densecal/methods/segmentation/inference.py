"""Load a trained checkpoint and turn images into probability maps at their original size.

Binary checkpoints give one foreground map ``(H, W)`` per image; multi-class checkpoints
(``num_classes = K >= 2``) give ``(K, H, W)`` logits / class probabilities.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from densecal.data.transforms import image_to_tensor, resize
from densecal.errors import input_error
from densecal.methods.loading import load_module_checkpoint
from densecal.methods.registry import METHODS
from densecal.methods.segmentation.module import SegmentationModule

__all__ = ["load_module", "predict_class_probabilities", "predict_images", "predict_logits"]


def load_module(checkpoint: str | Path, map_location: str | torch.device = "cpu"
                ) -> SegmentationModule:
    """Load a ``densecal train`` checkpoint, ready for inference (eval mode).

    Raises:
        DensecalInputError: the file is missing, is not a checkpoint, or was not written by
            ``densecal train`` (named in the message).
    """
    module = load_module_checkpoint(
        checkpoint, SegmentationModule, family=lambda m: METHODS.create(m).objective is not None,
        what="segmentation checkpoint", required=("config", "num_train_images"),
        optional=("train_names",))
    return module.eval().to(map_location)


@torch.no_grad()
def predict_logits(module: SegmentationModule, images: Sequence[np.ndarray],
                   batch_size: int = 16) -> Iterator[torch.Tensor]:
    """Logits for RGB images, each at its own original size (before any temperature).

    Images are resized to the training ``image_size``, passed through the network in batches,
    and the logits resized back (bilinear) to the image size.

    Args:
        module: a loaded module (see :func:`load_module`).
        images: RGB images ``(H, W, 3)`` uint8, sizes may differ.
        batch_size: images per forward pass.

    Yields:
        Float32 logit tensors on the module's device, in input order: ``(H, W)`` foreground
        logits for a binary module, ``(K, H, W)`` class logits for a ``K``-class module.
    """
    size = module.config.image_size
    binary = module.task == "binary"
    device = next(module.parameters()).device
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        batch = torch.stack([resize(image_to_tensor(im), size) for im in chunk]).to(device)
        logits = module(batch)
        for im, logit in zip(chunk, logits, strict=True):
            h, w = im.shape[:2]
            up = F.interpolate(logit[None], size=(h, w), mode="bilinear", align_corners=False)
            yield (up[0, 0] if binary else up[0]).float()


@torch.no_grad()
def predict_images(module: SegmentationModule, images: Sequence[np.ndarray],
                   batch_size: int = 16) -> Iterator[np.ndarray]:
    """Foreground probability maps ``sigmoid(logits / T)`` at each image's original size.

    ``T`` is the checkpoint's post-hoc temperature (1 unless fitted by ``densecal calibrate``).

    Yields:
        ``(H, W)`` float32 maps in [0, 1], in input order.

    Raises:
        DensecalInputError: ``module`` is multi-class (use :func:`predict_class_probabilities`).
    """
    if module.task != "binary":
        raise input_error("checkpoint", f"is a {module.config.num_classes}-class model; "
                          "foreground maps need a binary one")
    for logits in predict_logits(module, images, batch_size):
        yield torch.sigmoid(module.calibrated_logits(logits)).cpu().numpy()


@torch.no_grad()
def predict_class_probabilities(module: SegmentationModule, images: Sequence[np.ndarray],
                                batch_size: int = 16) -> Iterator[np.ndarray]:
    """Class probability maps ``softmax(logits / T)`` over ``K`` classes, at each image's size.

    The logits of :func:`predict_logits` (resized bilinearly to the image size) are divided by
    the checkpoint's post-hoc temperature ``T`` (1 unless fitted) and soft-maxed over classes
    (Guo et al., ICML 2017, temperature scaling).

    Args:
        module: a loaded multi-class module (``num_classes = K >= 2``).
        images: RGB images ``(H, W, 3)`` uint8, sizes may differ.
        batch_size: images per forward pass.

    Yields:
        ``(K, H, W)`` float32 maps in [0, 1] summing to 1 over ``K``, in input order.

    Raises:
        DensecalInputError: ``module`` is binary (use :func:`predict_images`).
    """
    if module.task == "binary":
        raise input_error("checkpoint", "is a binary model; class probabilities need "
                          "--num-classes >= 2 (use predict_images)")
    for logits in predict_logits(module, images, batch_size):
        yield torch.softmax(module.calibrated_logits(logits[None]), dim=1)[0].cpu().numpy()
