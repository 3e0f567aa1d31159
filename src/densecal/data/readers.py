"""Read images, ground-truth masks and saved prediction maps, with one-line errors.

Every reader fully decodes its file (PIL ``Image.load()``), so a truncated PNG or JPEG fails here,
at the file that is broken, and not later inside a DataLoader worker. Every failure raises
:class:`~densecal.errors.DensecalInputError` whose message starts with the file path.

Value conventions (docs/methods.md section 8, "Folder dataset"):

- masks: 8-bit value / 255, 16-bit value / 65535, 1-bit as 0 / 1; soft (anti-aliased) masks stay
  soft. RGB masks are accepted only when the three channels are equal.
- label maps (multi-class): pixel values are class indices, read as they are (no scaling) from
  8-bit, 16-bit or palette single-channel images, or RGB images with equal channels.
- predictions: ``.png`` read like a mask (8-bit value / 255); ``.npy`` holds probabilities in
  [0, 1] with shape ``(H, W)`` or ``(1, H, W)``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from densecal.errors import input_error

__all__ = [
    "IMAGE_EXTENSIONS",
    "MASK_EXTENSIONS",
    "PREDICTION_EXTENSIONS",
    "SUM_TOLERANCE",
    "check_distribution",
    "read_distribution",
    "read_image",
    "read_label",
    "read_mask",
    "read_prediction",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
"""File extensions (lower case) accepted for input images."""

MASK_EXTENSIONS: tuple[str, ...] = (".png", ".bmp", ".tif", ".tiff")
"""File extensions (lower case) accepted for ground-truth masks."""

PREDICTION_EXTENSIONS: tuple[str, ...] = (".png", ".npy")
"""File extensions (lower case) accepted for saved prediction maps."""

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _check_file(path: Path, extensions: tuple[str, ...]) -> None:
    """Raise if ``path`` is missing, not a file, or has an extension outside ``extensions``."""
    if not path.exists():
        raise input_error(path, "file not found")
    if not path.is_file():
        raise input_error(path, "is not a file")
    if path.suffix.lower() not in extensions:
        raise input_error(path, f"unsupported extension {path.suffix!r} "
                                f"(expected one of {', '.join(extensions)})")


def _open_image(path: Path, extensions: tuple[str, ...]) -> Image.Image:
    """Open and fully decode an image file; raise a one-line input error on any failure."""
    _check_file(path, extensions)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise input_error(path, f"cannot be decoded as an image (truncated or corrupt?): "
                                f"{detail}") from None
    return image


def read_image(path: str | Path) -> np.ndarray:
    """Read an RGB image.

    Grayscale images are repeated over three channels, the alpha channel of RGBA / LA images is
    dropped, palette images are expanded, 16-bit grayscale is scaled to 8 bits (value / 257).

    Args:
        path: a ``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, ``.tif`` or ``.tiff`` file.

    Returns:
        ``(H, W, 3)`` uint8 array, RGB order.

    Raises:
        DensecalInputError: missing file, unsupported extension, undecodable or truncated file,
            or an image mode that has no RGB reading (e.g. 32-bit float).
    """
    path = Path(path)
    image = _open_image(path, IMAGE_EXTENSIONS)
    if image.mode in _SIXTEEN_BIT_MODES:
        gray = np.rint(np.asarray(image, dtype=np.float64) / 257.0).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode not in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr",
                          "La", "RGBa"):
        raise input_error(path, f"unsupported image mode {image.mode!r} "
                                f"(expected 8-bit grayscale, RGB or RGBA)")
    return np.array(image.convert("RGB"), dtype=np.uint8)


def _gray8(path: Path, image: Image.Image) -> np.ndarray | None:
    """The 8-bit gray levels ``(H, W)`` uint8 of an 8-bit grayscale, palette or RGB(A) image
    whose channels agree (``None`` for other pixel formats)."""
    mode = image.mode
    if mode in ("L", "LA", "La"):
        return np.asarray(image.getchannel(0), dtype=np.uint8)
    if mode in ("P", "PA", "RGB", "RGBA", "RGBX", "RGBa"):
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        if not ((rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 0] == rgb[:, :, 2]).all()):
            raise input_error(path, "colour mask with different values in its R, G and B "
                                    "channels; a single-channel (grayscale) mask is expected")
        return rgb[:, :, 0]
    return None


def _mask_values(path: Path, image: Image.Image) -> np.ndarray:
    """Convert a decoded mask image to float32 values in [0, 1] following the module rules."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=np.float32)
    if mode in _SIXTEEN_BIT_MODES:
        return (np.asarray(image, dtype=np.float64) / 65535.0).astype(np.float32)
    if mode == "I":
        values = np.asarray(image, dtype=np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise input_error(path, f"32-bit mask values outside [0, 65535] "
                                    f"(min {values.min()}, max {values.max()})")
        return (values / 65535.0).astype(np.float32)
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            raise input_error(path, "float mask values must be finite and in [0, 1]")
        return values.astype(np.float32)
    gray = _gray8(path, image)
    if gray is None:
        raise input_error(path, f"unsupported mask mode {mode!r} "
                                f"(expected 1-bit, 8-bit or 16-bit grayscale)")
    return (gray / 255.0).astype(np.float32)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a ground-truth mask as values in [0, 1].

    8-bit masks read as value / 255 (so 128 -> 128/255, soft masks stay soft), 16-bit as
    value / 65535, 1-bit as 0 / 1. RGB(A) or palette masks are accepted when R == G == B
    everywhere (the first channel is used); an alpha channel is ignored.

    Args:
        path: a ``.png``, ``.bmp``, ``.tif`` or ``.tiff`` file.

    Returns:
        ``(H, W)`` float32 array with values in [0, 1].

    Raises:
        DensecalInputError: missing file, unsupported extension, undecodable or truncated file,
            colour mask with unequal channels, or an unsupported pixel format.

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.png"
        >>> Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).save(p)
        >>> read_mask(p).tolist()
        [[0.0, 1.0]]
    """
    path = Path(path)
    return _mask_values(path, _open_image(path, MASK_EXTENSIONS))


def read_label(path: str | Path) -> np.ndarray:
    """Read a multi-class label map: each pixel value is a class index, taken as it is.

    1-bit images read as 0 / 1; 8-bit (``L``), 16-bit and 32-bit integer grayscale read their
    raw values; palette (``P``)
    images read their palette indices (not the colours, as in PASCAL VOC / Cityscapes label
    PNGs); RGB(A) images are accepted when R == G == B everywhere (the first channel is used).
    An alpha channel is ignored. Values are not checked against a number of classes here.

    Args:
        path: a ``.png``, ``.bmp``, ``.tif`` or ``.tiff`` file.

    Returns:
        ``(H, W)`` int64 array of non-negative class indices.

    Raises:
        DensecalInputError: missing file, unsupported extension, undecodable or truncated file,
            colour image with unequal channels, or a pixel format without integer values
            (float, negative 32-bit values).

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "l.png"
        >>> Image.fromarray(np.array([[0, 2, 255]], dtype=np.uint8)).save(p)
        >>> read_label(p).tolist()
        [[0, 2, 255]]
    """
    path = Path(path)
    image = _open_image(path, MASK_EXTENSIONS)
    mode = image.mode
    if mode in ("1", "L", "LA", "La", "P", "PA", *_SIXTEEN_BIT_MODES):
        values = np.asarray(image.getchannel(0) if mode in ("LA", "La", "PA") else image)
    elif mode == "I":
        values = np.asarray(image, dtype=np.int64)
        if values.size and values.min() < 0:
            raise input_error(path, f"negative label value {values.min()}")
    elif mode in ("RGB", "RGBA", "RGBX", "RGBa"):
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        if not ((rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 0] == rgb[:, :, 2]).all()):
            raise input_error(path, "colour label map with different values in its R, G and B "
                                    "channels; a single-channel map of class indices is expected")
        values = rgb[:, :, 0]
    else:
        raise input_error(path, f"unsupported label mode {mode!r} (expected 8-bit, 16-bit or "
                                f"palette single-channel class indices)")
    return np.asarray(values, dtype=np.int64)


def _load_npy(path: Path) -> np.ndarray:
    """``np.load`` of one ``.npy`` array, never unpickling; a ``.npz`` archive is refused.

    Raises:
        DensecalInputError: naming ``path``, when it is not a readable ``.npy`` array.
    """
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise input_error(path, f"cannot be read as a .npy array: {detail}") from None
    if not isinstance(array, np.ndarray):  # an .npz archive (NpzFile) saved under .npy
        array.close()
        raise input_error(path, "is a .npz archive, not a .npy array (save one map with np.save)")
    return array


def _read_npy_probabilities(path: Path) -> np.ndarray:
    """Load a ``.npy`` probability map and validate dtype, shape, finiteness and range."""
    array = _load_npy(path)
    if array.dtype.kind not in "biuf":
        raise input_error(path, f"expected a real-valued numeric array, got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise input_error(path, f"expected an (H, W) or (1, H, W) array, "
                                f"got shape {tuple(array.shape)}")
    if array.size == 0:
        raise input_error(path, f"empty array of shape {tuple(array.shape)}")
    values = array.astype(np.float64, copy=False)
    if not np.isfinite(values).all():
        n_bad = int((~np.isfinite(values)).sum())
        raise input_error(path, f"contains {n_bad} NaN or Inf values")
    if (values.min() < 0 or values.max() > 1):
        raise input_error(path, f"values outside [0, 1] (min {values.min():.6g}, "
                                f"max {values.max():.6g}): probabilities expected")
    return values.astype(np.float32)


def read_prediction(path: str | Path, *, keep_8bit: bool = False) -> np.ndarray:
    """Read a saved prediction map (foreground probability per pixel).

    Args:
        path: a ``.png`` (read like a mask: 8-bit value / 255, 16-bit value / 65535) or a
            ``.npy`` holding probabilities in [0, 1] with shape ``(H, W)`` or ``(1, H, W)``.
        keep_8bit: return an 8-bit map as its ``uint8`` levels ``v`` (meaning ``v / 255``)
            instead of float32: the form :class:`~densecal.metrics.PixelCalibration` scores
            exactly in one histogram pass. Other formats are float32 either way.

    Returns:
        ``(H, W)`` float32 array with values in [0, 1], or ``(H, W)`` uint8 levels (see
        ``keep_8bit``).

    Raises:
        DensecalInputError: missing file, unsupported extension, undecodable or truncated file,
            wrong shape, NaN / Inf values, or ``.npy`` values outside [0, 1] (logits are not
            accepted: apply a sigmoid before saving).
    """
    path = Path(path)
    _check_file(path, PREDICTION_EXTENSIONS)
    if path.suffix.lower() == ".npy":
        return _read_npy_probabilities(path)
    image = _open_image(path, PREDICTION_EXTENSIONS)
    gray = _gray8(path, image) if keep_8bit else None
    return gray if gray is not None else _mask_values(path, image)


SUM_TOLERANCE = 1e-3
"""Largest accepted ``|sum_k p_k - 1|`` of a probability or soft-truth map (as the metrics)."""


def check_distribution(array: np.ndarray, where: str | Path, num_classes: int,
                       shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Check that ``array`` is a ``(K, H, W)`` map of distributions over K classes.

    Args:
        array: the map; any real dtype.
        where: the file or image named in errors.
        num_classes: K.
        shape: the expected spatial size ``(H, W)`` (e.g. the label map's), if known.

    Returns:
        The map as float32 ``(K, H, W)``, values in [0, 1], summing to 1 over K within
        :data:`SUM_TOLERANCE`.

    Raises:
        DensecalInputError: wrong dtype or shape, NaN / Inf, values outside [0, 1], or sums
            over K away from 1 (the message names ``where``).
    """
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        got = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
        raise input_error(where, f"expected a real-valued array, got {got}")
    want = f"({num_classes}, {', '.join(map(str, shape)) if shape else 'H, W'})"
    if (array.ndim != 3 or array.shape[0] != num_classes or array.size == 0
            or (shape is not None and array.shape[1:] != tuple(shape))):
        raise input_error(where, f"expected class probabilities of shape {want}, got "
                                 f"{tuple(array.shape)}")
    values = array.astype(np.float64, copy=False)
    if not np.isfinite(values).all():
        raise input_error(where, f"contains {int((~np.isfinite(values)).sum())} NaN or Inf "
                                 "values")
    if values.min() < 0.0 or values.max() > 1.0:
        raise input_error(where, f"values outside [0, 1] (min {values.min():.6g}, max "
                                 f"{values.max():.6g}); probabilities expected")
    deviation = float(np.abs(values.sum(axis=0) - 1.0).max())
    if deviation > SUM_TOLERANCE:
        raise input_error(where, f"does not sum to 1 over the {num_classes} classes (max |sum - "
                                 f"1| {deviation:.3g})")
    return array.astype(np.float32, copy=False)


def read_distribution(path: str | Path, num_classes: int,
                      shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read a ``.npy`` map of class probabilities or soft truth ``(K, H, W)``.

    Args:
        path: the ``.npy`` file.
        num_classes: K.
        shape: expected spatial size ``(H, W)``, if known.

    Returns:
        float32 ``(K, H, W)``, see :func:`check_distribution`.

    Raises:
        DensecalInputError: missing or unreadable file, or a map that
            :func:`check_distribution` refuses (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise input_error(path, "missing file")
    array = _load_npy(path)
    return check_distribution(array, path, num_classes, shape)
