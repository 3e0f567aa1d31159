"""Multi-garment scenes: 2..4 Fashion-MNIST garments on one texture, with a class-index map.

Each garment is rendered with :func:`densecal.data.synthetic.scene.render_scene_layers` (scale,
rotation, tint, exact bilinear alpha). The first call also draws the scene's background crop; later
garments take their tint reference from a crop of that same background image, so all garments
are tinted against the scene's own colours. Garments are stacked in drawing order (later ones on
top) with the Porter-Duff "over" operator:

    image_k = alpha_k * foreground_k + (1 - alpha_k) * image_{k-1},   image_0 = background,

so garment ``k`` covers ``alpha_k * prod_{j > k} (1 - alpha_j)`` of each pixel. The label map is
the argmax over classes of that coverage, or background (0) where the garments cover less than
half of the pixel; garment class ``c`` (0..9) has label ``c + 1``.

Per-garment info supports "difficult" flags: the visible fraction (visible coverage over full
coverage: 1 = unoccluded), the area fraction, and a measured contrast (coverage-weighted mean RGB
distance between the garment and what lies under it, divided by sqrt(3), in [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from densecal.data.synthetic.scene import SceneParams, render_scene_layers
from densecal.errors import input_error

__all__ = ["GarmentInfo", "MultiScene", "MultiSceneParams", "make_multi_scene"]


@dataclass(frozen=True)
class MultiSceneParams:
    """Random ranges of multi-garment scenes.

    Attributes:
        n_garments: inclusive range of the number of garments per scene.
        scene: per-garment ranges (:class:`~densecal.data.synthetic.scene.SceneParams`); the default
            garment scale is smaller than the single-garment demo's so several fit.
    """

    n_garments: tuple[int, int] = (2, 4)
    scene: SceneParams = field(default_factory=lambda: SceneParams(garment_scale=(0.3, 0.6)))

    def __post_init__(self) -> None:
        lo, hi = self.n_garments
        if not 1 <= lo <= hi <= 16:
            raise input_error("n_garments", f"expected 1 <= lo <= hi <= 16, got "
                                            f"{self.n_garments}")


@dataclass(frozen=True)
class GarmentInfo:
    """One garment of a scene, in stacking order (later = on top).

    Attributes:
        cls: Fashion-MNIST class in 0..9 (label ``cls + 1``).
        bbox: ``(row0, col0, row1, col1)`` half-open box of its full silhouette
            (alpha >= 0.5), or ``None`` if it covers no pixel by half.
        area_fraction: full coverage ``sum(alpha) / S^2``.
        visible_fraction: visible coverage over full coverage, in [0, 1] (0 when unseen).
        labelled_pixels: pixels of the label map assigned to this garment.
        contrast: measured contrast against what lies under it, in [0, 1].
    """

    cls: int
    bbox: tuple[int, int, int, int] | None
    area_fraction: float
    visible_fraction: float
    labelled_pixels: int
    contrast: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        out = asdict(self)
        out["bbox"] = None if self.bbox is None else list(self.bbox)
        return out


@dataclass(frozen=True)
class MultiScene:
    """A rendered scene.

    Attributes:
        image: ``(S, S, 3)`` uint8 RGB.
        label: ``(S, S)`` uint8 class-index map, 0 = background, ``c + 1`` = garment class c.
        instance: ``(S, S)`` int16 index of the garment owning each pixel, -1 = background.
        garments: per-garment :class:`GarmentInfo`, in stacking order.
    """

    image: np.ndarray
    label: np.ndarray
    instance: np.ndarray
    garments: tuple[GarmentInfo, ...]


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def make_multi_scene(rng: np.random.Generator, garments: np.ndarray, classes: np.ndarray,
                     backgrounds: Sequence[np.ndarray], size: int,
                     params: MultiSceneParams = MultiSceneParams()) -> MultiScene:
    """Draw a number of garments from a pool and stack them on one background.

    Args:
        rng: random generator; the scene is a deterministic function of its state.
        garments: ``(P, 28, 28)`` uint8 pool of Fashion-MNIST images.
        classes: ``(P,)`` their classes in 0..9 (repeats allowed; garments are drawn uniformly
            from the pool, so a class may appear several times in a scene).
        backgrounds: ``(H, W, 3)`` uint8 texture images.
        size: scene side ``S``.
        params: random ranges.

    Returns:
        The :class:`MultiScene`.

    Raises:
        DensecalInputError: empty pool or mismatched ``garments`` / ``classes``.
    """
    if len(garments) == 0 or len(garments) != len(classes):
        raise input_error("garments", f"need a non-empty pool with one class each, got "
                                      f"{len(garments)} images and {len(classes)} classes")
    n = int(rng.integers(params.n_garments[0], params.n_garments[1] + 1))
    picks = rng.choice(len(garments), size=n, replace=True)
    first = render_scene_layers(rng, garments[picks[0]], backgrounds, size, params.scene)
    own_background = [np.rint(first.background * 255.0).astype(np.uint8)]
    layers = [first] + [render_scene_layers(rng, garments[k], own_background, size, params.scene)
                        for k in picks[1:]]
    canvas = first.background.astype(np.float64)
    alphas = np.stack([layer.alpha.astype(np.float64) for layer in layers])  # (n, S, S)
    contrasts = []
    for k, layer in enumerate(layers):
        fg = layer.foreground.astype(np.float64)
        distance = np.linalg.norm(fg - canvas, axis=-1) / np.sqrt(3.0)
        contrasts.append((distance, alphas[k]))
        canvas = alphas[k][:, :, None] * fg + (1.0 - alphas[k][:, :, None]) * canvas
    # above[k] = prod_{j >= k} (1 - alpha_j) for k = 0..n; above[n] = 1
    above = np.cumprod(np.concatenate([np.ones((1, size, size)), (1.0 - alphas)[::-1]]),
                       axis=0)[::-1]
    visible = alphas * above[1:]
    cls = np.asarray(classes)[picks].astype(np.int64)
    per_class = np.zeros((10, size, size))
    np.add.at(per_class, cls, visible)
    foreground = visible.sum(0) >= 0.5
    label = np.where(foreground, per_class.argmax(0) + 1, 0).astype(np.uint8)
    owner = visible.argmax(0)
    instance = np.where(foreground & (cls[owner] + 1 == label), owner, -1).astype(np.int16)
    infos = []
    for k in range(n):
        full = float(alphas[k].sum())
        distance, _ = contrasts[k]
        weight = float(visible[k].sum())
        infos.append(GarmentInfo(
            cls=int(cls[k]), bbox=_bbox(alphas[k] >= 0.5), area_fraction=full / size**2,
            visible_fraction=weight / full if full > 0 else 0.0,
            labelled_pixels=int((instance == k).sum()),
            contrast=float((distance * visible[k]).sum() / weight) if weight > 0 else 0.0))
    image = np.rint(np.clip(canvas, 0.0, 1.0) * 255.0).astype(np.uint8)
    return MultiScene(image=image, label=label, instance=instance, garments=tuple(infos))
