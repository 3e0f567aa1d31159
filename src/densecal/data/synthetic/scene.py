"""One demo scene: a Fashion-MNIST garment composited onto a texture crop, with its exact mask.

The garment's alpha is its silhouette (pixels above a small threshold, holes filled), scaled,
rotated and placed with bilinear resampling, so its edges are anti-aliased; the composite is

    image = alpha * foreground + (1 - alpha) * background

and the ground-truth mask *is* that alpha: a soft mask that is exact by construction (the
"alpha matte" image model of Porter & Duff, 1984). Everything is drawn from one
``numpy.random.Generator``, so a scene is a deterministic function of the generator's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from densecal.data.synthetic.textures import random_texture_crop
from densecal.errors import input_error

__all__ = ["SceneLayers", "SceneParams", "composite", "make_scene", "render_scene_layers"]

_GARMENT_SIDE = 28


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    lo, hi = value
    if not low <= lo <= hi <= high:
        raise input_error(name, f"expected a range {low} <= lo <= hi <= {high}, got {value}")


@dataclass(frozen=True)
class SceneParams:
    """Random ranges of the demo scenes.

    Attributes:
        garment_scale: side of the garment's 28-px box as a fraction of the scene side.
        max_rotation_deg: garments are rotated by ``U(-max, max)`` degrees.
        background_scale: crop side as a fraction of the texture's shorter side.
        background_tint: maximum relative per-channel gain change of the background.
        garment_contrast: weight ``c ~ U(range)`` of the garment's colour against the
            background's mean colour (lower = harder scenes).
        alpha_threshold: garment pixels above this 8-bit value form the silhouette.
    """

    garment_scale: tuple[float, float] = (0.4, 0.8)
    max_rotation_deg: float = 45.0
    background_scale: tuple[float, float] = (0.2, 0.8)
    background_tint: float = 0.25
    garment_contrast: tuple[float, float] = (0.35, 1.0)
    alpha_threshold: int = 10

    def __post_init__(self) -> None:
        _check_range("garment_scale", self.garment_scale, 0.05, 1.5)
        _check_range("background_scale", self.background_scale, 0.01, 1.0)
        _check_range("garment_contrast", self.garment_contrast, 0.0, 1.0)
        if not 0 <= self.max_rotation_deg <= 180:
            raise input_error("max_rotation_deg", f"must be in [0, 180], "
                                                  f"got {self.max_rotation_deg}")
        if not 0 <= self.background_tint < 1:
            raise input_error("background_tint", f"must be in [0, 1), got {self.background_tint}")
        if not 0 <= self.alpha_threshold < 255:
            raise input_error("alpha_threshold", f"must be in [0, 255), "
                                                 f"got {self.alpha_threshold}")


@dataclass(frozen=True)
class SceneLayers:
    """The layers of one scene, before compositing and 8-bit quantisation.

    Attributes:
        foreground: ``(S, S, 3)`` float32 in [0, 1], the tinted garment (defined everywhere).
        background: ``(S, S, 3)`` float32 in [0, 1], the texture crop.
        alpha: ``(S, S)`` float32 in [0, 1], the garment's coverage of each pixel.
    """

    foreground: np.ndarray
    background: np.ndarray
    alpha: np.ndarray


def _garment_layers(rng: np.random.Generator, garment: np.ndarray, background_mean: np.ndarray,
                    params: SceneParams) -> tuple[np.ndarray, np.ndarray]:
    """Silhouette ``(28, 28)`` and tinted colour ``(28, 28, 3)`` of a garment, float64."""
    silhouette = ndimage.binary_fill_holes(garment > params.alpha_threshold).astype(np.float64)
    hue = rng.uniform(0.1, 1.0, size=3)
    hue /= hue.max()
    shade = 0.25 + 0.75 * (garment.astype(np.float64) / 255.0)
    contrast = rng.uniform(*params.garment_contrast)
    colour = contrast * shade[:, :, None] * hue + (1.0 - contrast) * background_mean
    return silhouette, colour


def _placement_coordinates(rng: np.random.Generator, size: int,
                           params: SceneParams) -> np.ndarray:
    """Garment-grid coordinates ``(2, S, S)`` sampled by each scene pixel centre.

    Inverse of: scale by ``s`` scene px per garment px, rotate by ``theta``, translate the
    garment centre (13.5, 13.5) to ``(cy, cx)``.
    """
    box = rng.uniform(*params.garment_scale) * size
    scale = box / _GARMENT_SIDE
    theta = np.deg2rad(rng.uniform(-params.max_rotation_deg, params.max_rotation_deg))
    margin = min(0.4 * box, size / 2.0)
    cy, cx = rng.uniform(margin, size - margin, size=2)
    rows, cols = np.meshgrid(np.arange(size, dtype=np.float64) - cy,
                             np.arange(size, dtype=np.float64) - cx, indexing="ij")
    cos, sin = np.cos(theta), np.sin(theta)
    centre = (_GARMENT_SIDE - 1) / 2.0
    return np.stack([(cos * rows + sin * cols) / scale + centre,
                     (-sin * rows + cos * cols) / scale + centre])


def render_scene_layers(rng: np.random.Generator, garment: np.ndarray,
                        backgrounds: Sequence[np.ndarray], size: int,
                        params: SceneParams = SceneParams()) -> SceneLayers:
    """Draw the background, the garment's colour and its placement; return the layers.

    Args:
        rng: random generator; the scene is a deterministic function of its state.
        garment: ``(28, 28)`` uint8 Fashion-MNIST image (0 = background).
        backgrounds: ``(H, W, 3)`` uint8 texture images to crop the background from.
        size: scene side ``S``.
        params: random ranges.

    Returns:
        The :class:`SceneLayers`.
    """
    if garment.shape != (_GARMENT_SIDE, _GARMENT_SIDE):
        raise input_error("garment", f"expected a (28, 28) image, got {garment.shape}")
    background = random_texture_crop(rng, backgrounds, size,
                                     scale=params.background_scale, tint=params.background_tint)
    silhouette, colour = _garment_layers(rng, garment, background.mean(axis=(0, 1)), params)
    coords = _placement_coordinates(rng, size, params)
    alpha = ndimage.map_coordinates(silhouette, coords, order=1, mode="constant", cval=0.0)
    foreground = np.stack([ndimage.map_coordinates(colour[:, :, k], coords, order=1,
                                                   mode="nearest") for k in range(3)], axis=-1)
    return SceneLayers(foreground=np.clip(foreground, 0, 1).astype(np.float32),
                       background=background.astype(np.float32),
                       alpha=np.clip(alpha, 0, 1).astype(np.float32))


def composite(layers: SceneLayers) -> np.ndarray:
    """``alpha * foreground + (1 - alpha) * background``, rounded to uint8.

    Returns:
        ``(S, S, 3)`` uint8 image.
    """
    alpha = layers.alpha.astype(np.float64)[:, :, None]
    blend = alpha * layers.foreground + (1.0 - alpha) * layers.background
    return np.rint(np.clip(blend, 0.0, 1.0) * 255.0).astype(np.uint8)


def make_scene(rng: np.random.Generator, garment: np.ndarray, backgrounds: Sequence[np.ndarray],
               size: int, params: SceneParams = SceneParams()) -> tuple[np.ndarray, np.ndarray]:
    """Make one demo scene and its exact soft mask.

    Args:
        rng: random generator; the scene is a deterministic function of its state.
        garment: ``(28, 28)`` uint8 Fashion-MNIST image.
        backgrounds: ``(H, W, 3)`` uint8 texture images.
        size: scene side ``S``.
        params: random ranges.

    Returns:
        ``(image, mask)``: ``(S, S, 3)`` uint8 and ``(S, S)`` float32 in [0, 1], the alpha.
    """
    layers = render_scene_layers(rng, garment, backgrounds, size, params)
    return composite(layers), layers.alpha
