"""Score a trained segmentation model on folder datasets: ``densecal evaluate --checkpoint``.

The model predicts every image (:mod:`densecal.apps.predict`) and the maps stream into the
evaluators of :mod:`densecal.evaluation`, one image at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from densecal.apps.predict import iter_class_probabilities, iter_predictions, load_segmenter
from densecal.data.pairs import find_pairs
from densecal.data.readers import read_label
from densecal.errors import input_error
from densecal.evaluation.binary import evaluate_maps
from densecal.evaluation.folders import (
    add_class_image,
    class_evaluator,
    has_mask_folder,
    soft_truth_dir,
)
from densecal.evaluation.options import EvaluationOptions
from densecal.evaluation.schema import Evaluation
from densecal.methods.segmentation.module import SegmentationModule

__all__ = ["evaluate_checkpoint"]


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path,
                        options: EvaluationOptions | None = None, *, ood: str | Path | None = None,
                        batch_size: int = 16) -> dict[str, Evaluation]:
    """Evaluate a checkpoint on a folder dataset (split ``test``) and optionally ``ood``.

    Binary checkpoints give ``densecal.evaluate/2`` results; multi-class checkpoints
    ``densecal.evaluate-multiclass/3`` (see :mod:`densecal.evaluation.multiclass`), with the
    label folders read as class indices, the checkpoint's ``ignore_index``, foreground and
    per-volume metrics, and calibration against ``DATA/soft/STEM.npy`` when ``DATA/soft``
    exists.

    Raises:
        DensecalInputError: unreadable checkpoint or data; binary-only options (``protocol``,
            ``confidence``, ``target``, ``threshold`` away from their defaults) with a
            multi-class checkpoint.
    """
    module = load_segmenter(checkpoint)
    if module.task != "binary":
        evaluations = {"test": _evaluate_classes(module, data, options, batch_size)}
        if ood is not None:
            evaluations["ood"] = _evaluate_classes(module, ood, options, batch_size, ood=True)
        return evaluations
    evaluations = {"test": evaluate_maps(
        ((n, p, m) for n, _, m, p in iter_predictions(module, data, batch_size=batch_size)),
        options, name=Path(data).name)}
    if ood is not None:
        evaluations["ood"] = evaluate_maps(_ood_images(module, ood, batch_size), options,
                                           name=Path(ood).name)
    return evaluations


def _ood_images(checkpoint: str | Path | SegmentationModule, ood: str | Path, batch_size: int
                ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """OOD images scored against their masks if the folder has them, else all-zero masks."""
    for name, _, mask, prob in iter_predictions(checkpoint, ood,
                                                with_masks=has_mask_folder(ood),
                                                batch_size=batch_size):
        yield name, prob, mask if mask is not None else np.zeros_like(prob)


def _evaluate_classes(module: SegmentationModule, data: str | Path,
                      options: EvaluationOptions | None, batch_size: int, *,
                      ood: bool = False) -> Evaluation:
    """Multi-class evaluation of one folder; an OOD folder without label masks is scored
    against all-background labels (and without soft truth)."""
    config = module.config
    with_labels = not ood or has_mask_folder(data)
    soft_dir = soft_truth_dir(Path(data)) if with_labels else None
    evaluator = class_evaluator(options, config.num_classes, config.ignore_index,
                                 Path(data).name, soft_dir)
    labels = {p.name: p.mask for p in find_pairs(data)} if with_labels else {}
    for name, probs in iter_class_probabilities(module, data, batch_size):
        label = (read_label(labels[name]) if name in labels
                 else np.zeros(probs.shape[1:], np.int64))
        if label.shape != probs.shape[1:]:
            raise input_error(labels[name], f"label size {label.shape} differs from image "
                                            f"size {probs.shape[1:]}")
        add_class_image(evaluator, name, probs, label, soft_dir)
    return evaluator.evaluation()
