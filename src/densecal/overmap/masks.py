"""Object masks ``M`` for Over-MAP read from a masks folder.

Masks from a segmentation checkpoint come from :func:`densecal.apps.overmap.masks_from_segmenter`
(the segmenter must be independent of the classifier).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from densecal._deprecated import moved_names
from densecal.data.readers import MASK_EXTENSIONS, read_mask
from densecal.errors import input_error

__all__ = ["masks_from_folder"]

__getattr__ = moved_names(__name__, {"masks_from_segmenter": "densecal.apps.overmap"})


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
