"""A simulated rater whose labels depend on image intensity: an ambiguity no fixed kernel models.

Used by ``densecal data brain --rater dark-gm`` (:mod:`densecal.data.convert.brain`). On the
MNI152 slices the only ambiguity is partial volume at tissue boundaries, which is what SVLS's
fixed Gaussian kernel models. This rater adds one that depends on what the image shows, not on
where a boundary is: it calls *dark grey matter* background.

For one slice with tissue map ``T = argmax(partial-volume truth)`` and image ``x`` in [0, 1]:

- ``I = gaussian_filter(x, 1 px)`` (the rater judges a pixel's neighbourhood);
- ``t0`` = the ``quantile`` of ``I`` over the slice's grey-matter pixels, ``s = sd * IQR`` of the
  same values (at least 1e-3);
- a rater draws one threshold ``t = t0 + s * e``, ``e ~ N(0, 1)``, for the whole slice (raters
  differ systematically, not pixel by pixel) and labels grey-matter pixels with ``I < t``
  background, every other pixel its tissue ``T``;
- so the true label distribution of a pixel (over raters) is ``onehot(T)`` with, on grey
  matter, the share ``Phi((t0 - I) / s)`` moved to background.

Everything is a deterministic function of the image, the tissue map and the seeded draw ``e``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.special import ndtr

from densecal.types import StrEnum

__all__ = ["GREY_MATTER", "Rater", "rater_distribution", "rater_labels"]

GREY_MATTER = 1
BACKGROUND = 0


class Rater(StrEnum):
    """Who labels the brain slices (``densecal data brain --rater``)."""

    NONE = "none"  # the argmax of the partial-volume truth
    DARK_GM = "dark-gm"  # dark grey matter called background (module docstring)


def _threshold(image: np.ndarray, tissue: np.ndarray, quantile: float, sd: float
               ) -> tuple[np.ndarray, float, float]:
    smooth = gaussian_filter(image.astype(np.float64), 1.0, mode="nearest")
    grey = smooth[tissue == GREY_MATTER]
    if grey.size == 0:
        return smooth, 0.0, 1.0
    low, high = np.percentile(grey, [25, 75])
    return smooth, float(np.quantile(grey, quantile)), max(sd * float(high - low), 1e-3)


def rater_distribution(image: np.ndarray, soft: np.ndarray, *, quantile: float = 0.4,
                       sd: float = 0.5) -> np.ndarray:
    """The per-pixel label distribution over raters (module docstring).

    Args:
        image: ``(H, W)`` image in [0, 1].
        soft: ``(3, H, W)`` partial-volume truth [background, GM, WM]; its argmax is the tissue.
        quantile: ``t0``'s quantile of the grey-matter intensities, in (0, 1).
        sd: the rater spread ``s`` in units of the grey-matter interquartile range, > 0.

    Returns:
        ``(3, H, W)`` float32 distributions summing to 1.

    Example:
        >>> image = np.linspace(0, 1, 16).reshape(4, 4)
        >>> soft = np.zeros((3, 4, 4)); soft[1] = 1.0  # all grey matter
        >>> dist = rater_distribution(image, soft)
        >>> bool(dist[0, 0, 0] > 0.9 and dist[1, 3, 3] > 0.9), float(dist.sum(0).min())
        (True, 1.0)
    """
    tissue = soft.argmax(0)
    smooth, t0, spread = _threshold(image, tissue, quantile, sd)
    moved = np.where(tissue == GREY_MATTER, ndtr((t0 - smooth) / spread), 0.0)
    out = np.eye(soft.shape[0])[tissue].transpose(2, 0, 1)
    out[BACKGROUND] += moved
    out[GREY_MATTER] -= moved
    return out.astype(np.float32)


def rater_labels(image: np.ndarray, soft: np.ndarray, rng: np.random.Generator, *,
                 quantile: float = 0.4, sd: float = 0.5) -> np.ndarray:
    """One rater's label map: a threshold ``t = t0 + s e`` drawn from ``rng`` for the slice.

    Args and ranges as :func:`rater_distribution`; ``rng`` draws one standard normal.

    Returns:
        ``(H, W)`` uint8 class indices.
    """
    tissue = soft.argmax(0)
    smooth, t0, spread = _threshold(image, tissue, quantile, sd)
    threshold = t0 + spread * float(rng.standard_normal())
    dark = (tissue == GREY_MATTER) & (smooth < threshold)
    return np.where(dark, BACKGROUND, tissue).astype(np.uint8)
