"""Texture images bundled with scikit-image: demo backgrounds and out-of-distribution textures.

Only files shipped inside the scikit-image wheel (``skimage/data/``) are read, directly from the
installed package, so nothing is ever downloaded. The two sets are disjoint: OOD textures never
appear behind a demo garment, so OOD scenes test "nothing seen before" as ASLP's DTD protocol does
(docs/methods.md section 1.3), in miniature.

Licences (from scikit-image's ``skimage.data`` documentation): brick, grass, gravel - CC0
(cc0textures.com); camera, chelsea, coffee, cell, microaneurysms - CC0 by their photographers;
astronaut, rocket, text - public domain; coins - no known copyright restrictions (Brooklyn
Museum); moon - no licence stated beyond scikit-image's own (BSD-3-Clause).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from densecal.data.readers import read_image
from densecal.errors import input_error

__all__ = ["BACKGROUND_NAMES", "OOD_TEXTURE_NAMES", "load_texture", "random_texture_crop"]

BACKGROUND_NAMES: tuple[str, ...] = (
    "brick", "grass", "camera", "coffee", "astronaut", "chelsea", "rocket", "coins", "text",
)
"""scikit-image sample images used behind the demo garments (train, val and test scenes)."""

OOD_TEXTURE_NAMES: tuple[str, ...] = ("gravel", "moon", "cell", "microaneurysms")
"""scikit-image sample images used only for the out-of-distribution split (all-zero masks)."""

_FILES = {"rocket": "rocket.jpg"}


def _texture_path(name: str) -> Path:
    if name not in BACKGROUND_NAMES + OOD_TEXTURE_NAMES:
        raise input_error("texture", f"unknown texture {name!r} (known: "
                                     f"{', '.join(BACKGROUND_NAMES + OOD_TEXTURE_NAMES)})")
    return Path(str(resources.files("skimage.data") / _FILES.get(name, f"{name}.png")))


@functools.cache
def load_texture(name: str) -> np.ndarray:
    """Load one bundled scikit-image sample image as RGB.

    Args:
        name: one of :data:`BACKGROUND_NAMES` or :data:`OOD_TEXTURE_NAMES`.

    Returns:
        ``(H, W, 3)`` uint8 array (grayscale repeated over channels), read-only, cached.

    Raises:
        DensecalInputError: unknown name, or the file is missing from the scikit-image install.
    """
    image = read_image(_texture_path(name))
    image.setflags(write=False)
    return image


def random_texture_crop(rng: np.random.Generator, textures: Sequence[np.ndarray], size: int,
                        scale: tuple[float, float] = (0.2, 0.8),
                        tint: float = 0.25) -> np.ndarray:
    """Random square crop of a random texture, resized, flipped and mildly colourised.

    The crop side is ``u * min(H, W)`` with ``u ~ U(scale)``; it is resized to ``size`` with
    PIL's bilinear filter (antialiased when shrinking), flipped left-right and up-down with
    probability 1/2 each, then each channel is multiplied by a gain ``1 + U(-tint, tint)``.

    Args:
        rng: random generator (all draws come from it).
        textures: candidate ``(H, W, 3)`` uint8 images.
        size: output side ``S``.
        scale: range of the crop side as a fraction of the texture's shorter side, in (0, 1].
        tint: maximum relative change of each channel's gain, in [0, 1).

    Returns:
        ``(S, S, 3)`` float32 array in [0, 1].
    """
    if not textures:
        raise input_error("textures", "need at least one texture image")
    texture = textures[int(rng.integers(len(textures)))]
    height, width = texture.shape[:2]
    side = min(max(rng.uniform(*scale) * min(height, width), 4.0), float(min(height, width)))
    left, top = rng.uniform(0.0, width - side), rng.uniform(0.0, height - side)
    crop = Image.fromarray(texture).resize((size, size), Image.Resampling.BILINEAR,
                                           box=(left, top, left + side, top + side))
    out = np.asarray(crop, dtype=np.float32) / 255.0
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.5:
        out = out[::-1]
    gains = 1.0 + rng.uniform(-tint, tint, size=3)
    return np.clip(out * gains.astype(np.float32), 0.0, 1.0)
