"""Over-MAP on a classification folder with a trained classifier: ``densecal overmap``.

Loads the classifier checkpoint, takes object masks from an independent binary segmenter
checkpoint or from a masks folder, scores every image (:func:`densecal.overmap.analyse_images`)
and writes the outputs (:func:`densecal.overmap.write_overmap_outputs`).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from densecal._checks import check_out_apart, parse_choice
from densecal.atomic import check_replaceable
from densecal.data.classification import read_classification_folder
from densecal.data.readers import read_image
from densecal.errors import input_error
from densecal.methods.classify import load_classifier
from densecal.methods.segmentation.inference import load_module, predict_images
from densecal.overmap.analysis import analyse_images
from densecal.overmap.masks import masks_from_folder
from densecal.overmap.report import write_overmap_outputs
from densecal.overmap.scores import OverlapScore

__all__ = ["masks_from_segmenter", "run_overmap"]


def masks_from_segmenter(checkpoint: str | Path, images: Sequence[np.ndarray],
                         threshold: float = 0.5, batch_size: int = 16) -> list[np.ndarray]:
    """Binary masks ``q >= threshold`` from a binary densecal segmentation checkpoint.

    The segmenter must be independent of the classifier (``docs/methods.md``, Over-MAP).

    Args:
        checkpoint: a ``densecal train`` checkpoint of a binary (saliency) model.
        images: RGB ``(H, W, 3)`` uint8 images.
        threshold: foreground probability threshold.
        batch_size: images per forward pass.

    Returns:
        ``(H, W)`` bool masks at each image's size.

    Raises:
        DensecalInputError: bad checkpoint or a multi-class one.
    """
    module = load_module(checkpoint)
    return [q >= threshold for q in predict_images(module, images, batch_size)]


def _manifest(data: Path) -> dict[str, str] | None:
    """``{name: reason}`` of ``DATA/manifest.csv`` (the misleading training images), if any."""
    path = data / "manifest.csv"
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as f:
        return {row["name"]: row.get("reason", "") or "" for row in csv.DictReader(f)}


def run_overmap(classifier: str | Path, data: str | Path, out: str | Path, *,
                segmenter: str | Path | None = None, masks: str | Path | None = None,
                layer: str | None = None, score: OverlapScore | str = "attention_mass",
                tau: float = 0.5,
                threshold: float = 0.5, n_bins: int = 10, k: int | None = None,
                figure_rows: int = 8, batch_size: int = 16) -> dict[str, Path]:
    """Over-MAP confidence of a classifier on a classification folder.

    Args:
        classifier: a ``densecal train --method classifier`` checkpoint.
        data: a classification folder (``images/``, ``labels.csv``).
        out: the output folder.
        segmenter: a binary densecal saliency checkpoint giving the object masks, or None.
        masks: a folder of object masks ``NAME.png`` (default ``DATA/masks`` when no segmenter).
        layer: Grad-CAM layer (dotted name in the classifier module; default its last block).
        score: ``attention_mass``, ``threshold_iou`` or ``peak_in_mask``.
        tau: the Grad-CAM threshold of ``threshold_iou``.
        threshold: the segmenter's foreground threshold.
        n_bins: overlap bins.
        k: audit depth (default: the misleading images in ``DATA/manifest.csv``).
        figure_rows: images in the figure grid.
        batch_size: images per forward pass.

    Returns:
        ``{name: path}`` of the files written (``per_image``, ``audit``, ``metrics``, ``grid``).

    Raises:
        DensecalInputError: an unknown score, both ``segmenter`` and ``masks``, classes that
            differ from the classifier's, unreadable checkpoints, images or masks.
    """
    score = parse_choice(OverlapScore, score, "--score",
                         message="expected one of {choices}, got {value}").value
    if segmenter is not None and masks is not None:
        raise input_error("--masks", "give --segmenter or --masks, not both")
    check_out_apart(out, {"--classifier": classifier, "--data": data, "--segmenter": segmenter,
                          "--masks": masks})
    check_replaceable(out, "overmap")
    data = Path(data)
    module = load_classifier(classifier)
    folder = read_classification_folder(data)
    if folder.classes != tuple(module.classes):
        raise input_error(data, f"classes {list(folder.classes)} differ from the classifier's "
                                f"{module.classes}")
    class_ids = folder.class_ids
    images = [read_image(p) for p in folder.paths]
    if segmenter is not None:
        object_masks = masks_from_segmenter(segmenter, images, threshold, batch_size)
    else:
        object_masks = masks_from_folder(masks or data / "masks", folder.names,
                                         [im.shape[:2] for im in images])
    layer_name = layer[len("net."):] if layer and layer.startswith("net.") else layer
    result = analyse_images(module.net, images, object_masks, module.config.image_size,
                            class_ids, layer=layer_name, tau=tau, batch_size=batch_size,
                            keep_maps=figure_rows)
    return write_overmap_outputs(out, folder.names, folder.classes, class_ids, result,
                                 images=images, masks=object_masks, manifest=_manifest(data),
                                 score=score, n_bins=n_bins, k=k)
