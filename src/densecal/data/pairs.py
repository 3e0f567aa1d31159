"""Pair image files with mask files (or prediction maps with masks) by file stem.

Folder layout (docs/methods.md section 8)::

    ROOT/<images>/NAME.{jpg,jpeg,png,bmp,tif,tiff}
    ROOT/<masks>/NAME.{png,bmp,tif,tiff}

``<images>`` is auto-detected among ``images, Image, Imgs, img, im`` and any ``*-Image`` folder
(DUTS style, e.g. ``DUTS-TR-Image``); ``<masks>`` among ``masks, GT, Mask, gt, labels`` and any
``*-Mask`` folder. Both can be given explicitly instead. Hidden files and files with other
extensions are ignored. Every problem raises :class:`~densecal.errors.DensecalInputError` with one
line naming the folder and what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from densecal.data.readers import IMAGE_EXTENSIONS, MASK_EXTENSIONS, PREDICTION_EXTENSIONS
from densecal.errors import input_error

__all__ = [
    "IMAGE_DIR_NAMES",
    "MASK_DIR_NAMES",
    "Pair",
    "find_images",
    "find_mask_dir",
    "find_pairs",
    "find_prediction_pairs",
    "find_predictions",
]

IMAGE_DIR_NAMES: tuple[str, ...] = ("images", "Image", "Imgs", "img", "im")
"""Image folder names recognised under a dataset root (plus any ``*-Image``)."""

MASK_DIR_NAMES: tuple[str, ...] = ("masks", "GT", "Mask", "gt", "labels")
"""Mask folder names recognised under a dataset root (plus any ``*-Mask``)."""

_MAX_LISTED = 5


@dataclass(frozen=True)
class Pair:
    """One sample of a folder dataset.

    Attributes:
        name: the shared file stem (e.g. ``"ILSVRC2012_test_00000004"``).
        image: path of the input image; for pairs from :func:`find_prediction_pairs`, the path
            of the saved prediction map.
        mask: path of the ground-truth mask.
    """

    name: str
    image: Path
    mask: Path


def _listing(names: Sequence[str]) -> str:
    """``"a, b, c"`` with at most five names, then ``", ..."``."""
    shown = ", ".join(sorted(names)[:_MAX_LISTED])
    return shown + (", ..." if len(names) > _MAX_LISTED else "")


def _check_root(root: Path, what: str) -> None:
    if not root.exists():
        raise input_error(root, f"{what} not found")
    if not root.is_dir():
        raise input_error(root, f"{what} is not a folder")


def _detect_subdir(root: Path, names: tuple[str, ...], suffix: str, kind: str) -> Path | None:
    """Find the single sub-folder of ``root`` named in ``names`` or ending with ``suffix``.

    Folder names are compared exactly as listed by the file system (so ``GT`` and ``gt`` are told
    apart even on case-insensitive file systems). Returns ``None`` when there is none; raises when
    several match, since picking one silently could pair the wrong files.
    """
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    found = [n for n in present if n in names or (n.endswith(suffix) and len(n) > len(suffix))]
    if len(found) > 1:
        raise input_error(root, f"several {kind} folders found ({', '.join(found)}); "
                                f"choose one explicitly")
    return root / found[0] if found else None


def _resolve_subdir(root: Path, given: str | Path | None, names: tuple[str, ...], suffix: str,
                    kind: str) -> Path:
    """Return the explicit folder (relative to ``root`` unless absolute) or the detected one."""
    if given is not None:
        folder = root / given
        _check_root(folder, f"{kind} folder")
        return folder
    folder = _detect_subdir(root, names, suffix, kind)
    if folder is None:
        present = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        expected = ", ".join(names) + f" or *{suffix}"
        raise input_error(root, f"no {kind} folder found (expected one of {expected}); "
                                f"found: {_listing(present) if present else 'nothing'}")
    return folder


def _files_by_stem(folder: Path, extensions: tuple[str, ...], kind: str) -> dict[str, Path]:
    """Map file stem -> path for the files of ``folder`` with an accepted extension."""
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() not in extensions:
            continue
        other = by_stem.get(path.stem)
        if other is not None:
            raise input_error(folder, f"duplicate name {path.stem!r}: both {other.name} and "
                                      f"{path.name}; keep one")
        by_stem[path.stem] = path
    if not by_stem:
        raise input_error(folder, f"no {kind} files found (extensions {', '.join(extensions)})")
    return by_stem


def _match(where: Path, first: dict[str, Path], second: dict[str, Path], first_kind: str,
           second_kind: str) -> list[Pair]:
    """Pair two stem maps; raise listing the names present on one side only."""
    only_first = sorted(set(first) - set(second))
    only_second = sorted(set(second) - set(first))
    if only_first or only_second:
        parts = []
        if only_first:
            parts.append(f"{len(only_first)} {first_kind}(s) have no {second_kind} "
                         f"({_listing(only_first)})")
        if only_second:
            parts.append(f"{len(only_second)} {second_kind}(s) have no {first_kind} "
                         f"({_listing(only_second)})")
        raise input_error(where, "unmatched file names: " + "; ".join(parts))
    return [Pair(name=name, image=first[name], mask=second[name]) for name in sorted(first)]


def find_mask_dir(root: str | Path, mask_dir: str | Path | None = None) -> Path:
    """Resolve the mask folder of a dataset root (auto-detected unless ``mask_dir`` is given).

    Args:
        root: dataset root folder.
        mask_dir: explicit mask folder, relative to ``root`` or absolute.

    Returns:
        The mask folder.

    Raises:
        DensecalInputError: root missing / not a folder, or no (or several) mask folders.
    """
    root = Path(root)
    _check_root(root, "dataset folder")
    return _resolve_subdir(root, mask_dir, MASK_DIR_NAMES, "-Mask", "mask")


def find_pairs(root: str | Path, image_dir: str | Path | None = None,
               mask_dir: str | Path | None = None) -> list[Pair]:
    """List the (image, mask) pairs of a folder dataset, paired by file stem, sorted by name.

    Args:
        root: dataset root folder.
        image_dir: image folder, relative to ``root`` or absolute; auto-detected if ``None``.
        mask_dir: mask folder, relative to ``root`` or absolute; auto-detected if ``None``.

    Returns:
        One :class:`Pair` per name, sorted by name.

    Raises:
        DensecalInputError: root missing or not a folder; no (or several) image / mask folders
            (the message lists what is there); a folder without accepted files; two files with
            the same stem in one folder; names present only among images or only among masks.
    """
    root = Path(root)
    _check_root(root, "dataset folder")
    images_at = _resolve_subdir(root, image_dir, IMAGE_DIR_NAMES, "-Image", "image")
    masks_at = _resolve_subdir(root, mask_dir, MASK_DIR_NAMES, "-Mask", "mask")
    images = _files_by_stem(images_at, IMAGE_EXTENSIONS, "image")
    masks = _files_by_stem(masks_at, MASK_EXTENSIONS, "mask")
    return _match(root, images, masks, "image", "mask")


def find_prediction_pairs(pred_dir: str | Path, gt_dir: str | Path) -> list[Pair]:
    """Pair saved prediction maps (``.png`` / ``.npy``) with ground-truth masks by file stem.

    Args:
        pred_dir: folder of prediction maps.
        gt_dir: a folder dataset root (its mask folder is auto-detected) or a mask folder.

    Returns:
        One :class:`Pair` per name, sorted by name, with ``image`` the prediction path.

    Raises:
        DensecalInputError: a folder missing or not a folder, without accepted files, with two
            files of the same stem, or names present on one side only.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    _check_root(pred_dir, "prediction folder")
    _check_root(gt_dir, "ground-truth folder")
    masks_at = _detect_subdir(gt_dir, MASK_DIR_NAMES, "-Mask", "mask") or gt_dir
    predictions = _files_by_stem(pred_dir, PREDICTION_EXTENSIONS, "prediction")
    masks = _files_by_stem(masks_at, MASK_EXTENSIONS, "mask")
    return _match(pred_dir, predictions, masks, "prediction", "mask")


def find_images(root: str | Path, image_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """List the images to predict on: a dataset root's image folder, or ``root`` itself.

    Args:
        root: a folder dataset root (image folder auto-detected) or a plain folder of images.
        image_dir: explicit image folder, relative to ``root`` or absolute.

    Returns:
        ``(name, path)`` per image, sorted by name.

    Raises:
        DensecalInputError: root missing / not a folder, several image folders, no images, or
            duplicate stems.
    """
    root = Path(root)
    _check_root(root, "image folder")
    if image_dir is not None:
        folder = _resolve_subdir(root, image_dir, IMAGE_DIR_NAMES, "-Image", "image")
    else:
        folder = _detect_subdir(root, IMAGE_DIR_NAMES, "-Image", "image") or root
    return sorted(_files_by_stem(folder, IMAGE_EXTENSIONS, "image").items())


def find_predictions(pred_dir: str | Path) -> list[tuple[str, Path]]:
    """List saved prediction maps (``.png`` / ``.npy``) of a folder as ``(name, path)``.

    Raises:
        DensecalInputError: folder missing, empty of maps, or with duplicate stems.
    """
    pred_dir = Path(pred_dir)
    _check_root(pred_dir, "prediction folder")
    return sorted(_files_by_stem(pred_dir, PREDICTION_EXTENSIONS, "prediction").items())
