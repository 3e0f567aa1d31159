"""Object masks ``M`` for Over-MAP: from a densecal saliency checkpoint or from a masks folder.

The segmenter must be independent of the classifier (METHODS.md section 6); a densecal binary
checkpoint (``densecal train``) gives foreground maps that are binarised at ``threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from densecal.data.readers import MASK_EXTENSIONS, read_mask
from densecal.errors import input_error

__all__ = ["masks_from_folder", "masks_from_segmenter"]


def masks_from_segmenter(checkpoint: str | Path, images: Sequence[np.ndarray],
                         threshold: float = 0.5, batch_size: int = 16) -> list[np.ndarray]:
    """Binary masks ``q >= threshold`` from a binary densecal segmentation checkpoint.

    Args:
        checkpoint: a ``densecal train`` checkpoint of a binary (saliency) model.
        images: RGB ``(H, W, 3)`` uint8 images.
        threshold: foreground probability threshold.
        batch_size: images per forward pass.

    Returns:
        ``(H, W)`` bool masks at each image's size.

    Raises:
        DensecalInputError: bad checkpoint or a multi-class one.
    """
    # lazy: the segmentation module pulls in Lightning, which the rest of overmap does not need
    from densecal.methods.inference import load_module, predict_images

    module = load_module(checkpoint)
    return [q >= threshold for q in predict_images(module, images, batch_size)]


def masks_from_folder(folder: str | Path, names: Sequence[str],
                      shapes: Sequence[tuple[int, int]] | None = None) -> list[np.ndarray]:
    """Binary masks ``value >= 0.5`` read from ``folder/NAME.png`` (any mask extension).

    Args:
        folder: mask folder (e.g. a fine-grained split's ``masks/``).
        names: image stems, in the order wanted.
        shapes: optional ``(H, W)`` each mask must have (the image sizes).

    Returns:
        ``(H, W)`` bool masks.

    Raises:
        DensecalInputError: missing folder or mask, unreadable file, or a size mismatch.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise input_error(folder, "no such masks folder")
    files = {p.stem: p for p in sorted(folder.iterdir())
             if p.is_file() and p.suffix.lower() in MASK_EXTENSIONS}
    out = []
    for i, name in enumerate(names):
        if name not in files:
            raise input_error(folder, f"no mask for image {name!r}")
        mask = read_mask(files[name]) >= 0.5
        if shapes is not None and mask.shape != tuple(shapes[i]):
            raise input_error(files[name], f"mask is {mask.shape}, image is {tuple(shapes[i])}")
        out.append(mask)
    return out
