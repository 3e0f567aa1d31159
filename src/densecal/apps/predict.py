"""Run a trained segmentation model over a folder of images: ``densecal predict``.

Binary checkpoints write foreground-probability maps; multi-class checkpoints (``num_classes =
K >= 2``) write argmax label maps (png) or ``(K, H, W)`` class probabilities (npy). The same
predictions feed :mod:`densecal.apps.evaluate_checkpoint` and :mod:`densecal.apps.calibrate`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from densecal._checks import check_int, check_out_apart, parse_choice
from densecal.atomic import check_replaceable, staged_directory
from densecal.data.pairs import find_images, find_pairs
from densecal.data.readers import read_image, read_mask
from densecal.errors import input_error
from densecal.methods.segmentation.inference import (
    load_module,
    predict_class_probabilities,
    predict_images,
)
from densecal.methods.segmentation.module import SegmentationModule
from densecal.progress import track
from densecal.types import StrEnum

__all__ = ["FORMATS", "MapFormat", "iter_class_probabilities", "iter_predictions", "load_segmenter",
           "predict_folder", "predicted"]



class MapFormat(StrEnum):
    """The file format of predicted maps (``--format``): 8-bit ``PNG`` or float32 ``NPY``."""

    PNG = "png"
    NPY = "npy"


FORMATS = tuple(f.value for f in MapFormat)
MAX_BATCH = 65_536
"""Largest ``--batch-size`` of a forward pass."""
_Item = TypeVar("_Item", bound=tuple)


def load_segmenter(checkpoint: str | Path | SegmentationModule) -> SegmentationModule:
    if isinstance(checkpoint, SegmentationModule):
        return checkpoint
    return load_module(checkpoint, "cuda" if torch.cuda.is_available() else "cpu")


def iter_predictions(checkpoint: str | Path | SegmentationModule, data: str | Path, *,
                     with_masks: bool = True,
                     batch_size: int = 16
                     ) -> Iterator[tuple[str, np.ndarray, np.ndarray | None, np.ndarray]]:
    """Predict every image of a folder.

    Args:
        checkpoint: a binary ``densecal train`` checkpoint (or its loaded module).
        data: a folder dataset (``with_masks=True``) or any folder of images.
        with_masks: pair images with masks; if false, masks are ``None``.
        batch_size: images per forward pass.

    Yields:
        ``(name, image (H, W, 3) uint8, mask (H, W) or None, probability map (H, W))``.
    """
    module = load_segmenter(checkpoint)
    if with_masks:
        items = [(p.name, p.image, p.mask) for p in find_pairs(data)]
    else:
        items = [(name, path, None) for name, path in find_images(data)]
    for (name, _, mask_path), image, prob in predicted(module, items, predict_images,
                                                         batch_size):
        mask = read_mask(mask_path) if mask_path is not None else None
        if mask is not None and mask.shape != prob.shape:
            raise input_error(mask_path, f"mask size {mask.shape} differs from image size "
                              f"{prob.shape}")
        yield name, image, mask, prob


def predicted(module: SegmentationModule, items: Sequence[_Item],
               predictor: Callable[[SegmentationModule, list[np.ndarray], int], Iterator[Any]],
               batch_size: int, *, what: str = "predict"
               ) -> Iterator[tuple[_Item, np.ndarray, Any]]:
    """Read the images of ``items`` (whose second field is the image path) batch by batch and
    yield ``(item, image, predictor output)`` in order, with progress shown as ``what``
    (:func:`densecal.progress.track`).

    Raises:
        DensecalInputError: ``batch_size`` is not an integer in ``[1, 65536]``.
    """
    check_int("--batch-size", batch_size, low=1, high=MAX_BATCH)
    yield from track(_batched(module, items, predictor, batch_size), what, total=len(items))


def _batched(module: SegmentationModule, items: Sequence[_Item],
             predictor: Callable[[SegmentationModule, list[np.ndarray], int], Iterator[Any]],
             batch_size: int) -> Iterator[tuple[_Item, np.ndarray, Any]]:
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        images = [read_image(item[1]) for item in chunk]
        yield from zip(chunk, images, predictor(module, images, batch_size), strict=True)


def iter_class_probabilities(module: SegmentationModule, data: str | Path, batch_size: int
                              ) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, (K, H, W) class probabilities)`` for every image of a folder."""
    for (name, _), _, prob in predicted(module, find_images(data),
                                         predict_class_probabilities, batch_size):
        yield name, prob


def predict_folder(checkpoint: str | Path, data: str | Path, out_dir: str | Path, *,
                   fmt: MapFormat | str = "png", batch_size: int = 16) -> int:
    """Write ``OUT/NAME.png`` (8-bit, round(255·q)) or ``OUT/NAME.npy`` (float32 q) per image.

    For a multi-class checkpoint (``K`` classes, ``K <= 256`` for png): ``OUT/NAME.png`` is the
    8-bit argmax label map (values ``0..K-1``) and ``OUT/NAME.npy`` the float32 ``(K, H, W)``
    class probabilities ``softmax(logits / T)``.

    Maps are staged and moved into ``out_dir`` only when all were written.

    Returns:
        The number of maps written.

    Raises:
        DensecalInputError: unknown format, unreadable checkpoint or images, an ``out_dir``
            that is, lies inside or contains an input.
    """
    check_out_apart(out_dir, {"--checkpoint": checkpoint, "--data": data})
    check_replaceable(out_dir, "predict")
    fmt = parse_choice(MapFormat, fmt, "--format",
                       message="unknown format {value}; choose png or npy").value
    module = load_segmenter(checkpoint)
    if module.task != "binary":
        return _predict_classes(module, data, out_dir, fmt=fmt, batch_size=batch_size)
    n = 0
    with staged_directory(out_dir, "predict") as stage:
        for name, _, _, prob in iter_predictions(module, data, with_masks=False,
                                                 batch_size=batch_size):
            if fmt == "png":
                Image.fromarray(np.round(prob * 255.0).astype(np.uint8)).save(stage / f"{name}.png")
            else:
                np.save(stage / f"{name}.npy", prob.astype(np.float32))
            n += 1
    return n


def _predict_classes(module: SegmentationModule, data: str | Path, out_dir: str | Path, *,
                     fmt: str, batch_size: int) -> int:
    """Multi-class :func:`predict_folder`: argmax label PNGs or ``(K, H, W)`` npy."""
    num_classes = module.config.num_classes
    if fmt == "png" and num_classes > 256:
        raise input_error("--format", f"png label maps hold at most 256 classes, the model has "
                          f"{num_classes}; use npy")
    n = 0
    with staged_directory(out_dir, "predict") as stage:
        for name, prob in iter_class_probabilities(module, data, batch_size):
            if fmt == "png":
                Image.fromarray(prob.argmax(axis=0).astype(np.uint8)).save(stage / f"{name}.png")
            else:
                np.save(stage / f"{name}.npy", prob.astype(np.float32))
            n += 1
    return n
