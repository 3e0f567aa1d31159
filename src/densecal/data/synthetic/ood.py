"""Out-of-distribution scenes: crops of textures never used as demo backgrounds, no object.

ASLP's OOD protocol (docs/methods.md section 1.3) runs a salient-object model on 500 DTD texture
images
whose ground truth is all background; a calibrated model should be confident there is nothing.
densecal's miniature uses :data:`~densecal.data.synthetic.textures.OOD_TEXTURE_NAMES`, disjoint
from the demo backgrounds, cropped and tinted exactly as the demo backgrounds are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from densecal.data.synthetic.scene import SceneParams
from densecal.data.synthetic.textures import OOD_TEXTURE_NAMES, load_texture, random_texture_crop

__all__ = ["OOD_TEXTURE_NAMES", "load_ood_textures", "make_ood_scene"]


def load_ood_textures() -> list[np.ndarray]:
    """The OOD texture images, ``(H, W, 3)`` uint8 each, in :data:`OOD_TEXTURE_NAMES` order."""
    return [load_texture(name) for name in OOD_TEXTURE_NAMES]


def make_ood_scene(rng: np.random.Generator, textures: Sequence[np.ndarray], size: int,
                   params: SceneParams = SceneParams()) -> tuple[np.ndarray, np.ndarray]:
    """One OOD scene: a random texture crop and its all-zero mask.

    Args:
        rng: random generator.
        textures: ``(H, W, 3)`` uint8 texture images.
        size: scene side ``S``.
        params: the crop scale and tint ranges are taken from here.

    Returns:
        ``(image, mask)``: ``(S, S, 3)`` uint8 and ``(S, S)`` float32 zeros.
    """
    crop = random_texture_crop(rng, textures, size, scale=params.background_scale,
                               tint=params.background_tint)
    image = np.rint(crop.astype(np.float64) * 255.0).astype(np.uint8)
    return image, np.zeros((size, size), dtype=np.float32)
