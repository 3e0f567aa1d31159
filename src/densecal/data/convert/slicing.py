"""2-D slices of 3-D volumes: orientation, cropping, exact area resampling, writing, staging.

Shared by the NIfTI folder converter (:mod:`densecal.data.convert.nifti`) and the MNI152 brain
slices
(:mod:`densecal.data.convert.brain`). Volumes are in RAS voxel order; a slice is displayed upright
(:func:`oriented_slice`); resampling is the exact box filter, so averaged per-pixel class
probabilities stay distributions (:func:`area_resample`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from densecal._checks import parse_choice
from densecal.types import StrEnum

__all__ = [
    "AXES",
    "AXIS_LETTERS",
    "Axis",
    "area_resample",
    "check_axis",
    "crop_window",
    "normalise_intensity",
    "oriented_slice",
    "square_resample",
    "write_slice",
]

class Axis(StrEnum):
    """A slicing plane (``--axis``); :data:`AXES` gives the RAS voxel axis it holds fixed."""

    SAGITTAL = "sagittal"
    CORONAL = "coronal"
    AXIAL = "axial"


AXES: dict[str, int] = {Axis.SAGITTAL.value: 0, Axis.CORONAL.value: 1, Axis.AXIAL.value: 2}
"""Slicing plane name -> the RAS voxel axis held fixed."""

AXIS_LETTERS: dict[str, str] = {"sagittal": "x", "coronal": "y", "axial": "z"}
"""Slicing plane name -> the letter used in slice stems (``NAME__z080``)."""


def check_axis(axis: Axis | str) -> int:
    """Return the RAS voxel axis of a plane name; raise ``DensecalInputError`` if unknown."""
    plane = parse_choice(Axis, axis, "axis", message="expected one of {choices}, got {value}")
    return AXES[plane.value]


def oriented_slice(volume: np.ndarray, axis: str, index: int) -> np.ndarray:
    """One slice of a RAS-ordered volume, displayed upright.

    The two remaining voxel axes ``a < b`` become columns (``a``, increasing to the right) and
    rows (``b``, increasing upwards, i.e. row 0 holds the largest ``b``). For an axial slice
    of voxel ``(x, y, z)``: ``pixel[Y - 1 - y, x]``.

    Args:
        volume: ``(X, Y, Z)`` or ``(X, Y, Z, K)`` array in RAS voxel order.
        axis: ``"sagittal"``, ``"coronal"`` or ``"axial"``.
        index: position along the fixed axis.

    Returns:
        ``(rows, cols)`` or, for a 4-D volume, ``(K, rows, cols)`` array (a view).

    Example:
        >>> v = np.zeros((3, 4, 5)); v[2, 1, 0] = 1
        >>> np.argwhere(oriented_slice(v, "axial", 0)).tolist()
        [[2, 2]]
    """
    plane = volume[(slice(None),) * check_axis(axis) + (index,)]  # (A, B) or (A, B, K), a view
    plane = np.swapaxes(plane, 0, 1)[::-1]  # (B reversed, A[, K])
    return np.moveaxis(plane, -1, 0) if plane.ndim == 3 else plane


def crop_window(array: np.ndarray, top: int, left: int, side: int,
                fill: float | Sequence[float] = 0.0) -> np.ndarray:
    """Cut a ``side x side`` window out of the last two axes; parts outside are ``fill``.

    Args:
        array: ``(H, W)`` or ``(C, H, W)`` array.
        top: first row of the window (may be negative).
        left: first column of the window (may be negative).
        side: window side, >= 1.
        fill: value outside ``array``; one per channel for ``(C, H, W)`` input.

    Returns:
        ``(side, side)`` or ``(C, side, side)`` float64 array.
    """
    h, w = array.shape[-2:]
    out = np.empty((*array.shape[:-2], side, side), dtype=np.float64)
    out[...] = np.asarray(fill, dtype=np.float64).reshape((-1, 1, 1) if array.ndim == 3 else ())
    r0, r1 = max(top, 0), min(top + side, h)
    c0, c1 = max(left, 0), min(left + side, w)
    if r1 > r0 and c1 > c0:
        out[..., r0 - top:r1 - top, c0 - left:c1 - left] = array[..., r0:r1, c0:c1]
    return out


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` overlap weights of output cells with input cells; rows sum to 1."""
    scale = n_in / n_out
    edges = np.arange(n_out + 1, dtype=np.float64) * scale
    j = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.minimum(edges[1:, None], j + 1) - np.maximum(edges[:-1, None], j)
    return np.clip(overlap, 0.0, None) / scale


def area_resample(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-average the last two axes to ``(height, width)`` (the box filter, any ratio).

    Output pixel ``(i, j)`` is the mean of the input over the rectangle it covers, each input
    pixel weighted by its overlap area, computed in float64 as ``A_h @ x @ A_w.T``. Averages of
    per-pixel probabilities therefore stay probabilities, summing to 1 over classes.

    Args:
        array: ``(..., H, W)`` array.
        height: output rows, >= 1.
        width: output columns, >= 1.

    Returns:
        ``(..., height, width)`` float64 array.

    Example:
        >>> area_resample(np.array([[0.0, 1.0, 2.0, 3.0]]), 1, 2).tolist()
        [[0.5, 2.5]]
    """
    x = np.asarray(array, dtype=np.float64)
    *lead, h, w = x.shape
    a_h, a_w = _area_matrix(h, height), _area_matrix(w, width)
    rows = np.ascontiguousarray(x).reshape(-1, w) @ a_w.T  # plain 2-D BLAS products only
    rows = rows.reshape(-1, h, width)
    out = np.tensordot(a_h, rows, axes=([1], [1]))  # (height, N, width)
    return np.moveaxis(out, 0, 1).reshape(*lead, height, width)


def square_resample(array: np.ndarray, size: int, fill: float | Sequence[float]) -> np.ndarray:
    """Pad the last two axes to a centred square with ``fill``, then area-resample to ``size``."""
    h, w = array.shape[-2:]
    side = max(h, w)
    square = crop_window(array, (h - side) // 2, (w - side) // 2, side, fill)
    return area_resample(square, size, size)


def normalise_intensity(volume: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Clip a volume to its ``low``-``high`` percentiles and scale that range to [0, 1].

    Args:
        volume: array of any shape, finite values.
        low: lower percentile.
        high: upper percentile.

    Returns:
        float32 array of the same shape in [0, 1]; all zeros for a constant volume.
    """
    lo, hi = np.percentile(volume, [low, high])
    if not hi > lo:
        return np.zeros(volume.shape, dtype=np.float32)
    return ((np.clip(volume, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def write_slice(root: Path, stem: str, image: np.ndarray, label: np.ndarray,
                soft: np.ndarray | None = None) -> None:
    """Write ``images/STEM.png``, ``masks/STEM.png`` and (if given) ``soft/STEM.npy``.

    Args:
        root: the split folder.
        stem: file stem.
        image: ``(H, W)`` values in [0, 1], stored as ``round(255 * value)``.
        label: ``(H, W)`` class indices in [0, 255].
        soft: ``(K, H, W)`` soft truth, stored as float32.
    """
    for sub in ("images", "masks") + (("soft",) if soft is not None else ()):
        (root / sub).mkdir(parents=True, exist_ok=True)
    pixels = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(root / "images" / f"{stem}.png")
    Image.fromarray(label.astype(np.uint8), mode="L").save(root / "masks" / f"{stem}.png")
    if soft is not None:
        np.save(root / "soft" / f"{stem}.npy", soft.astype(np.float32))


