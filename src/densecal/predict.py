"""Run a trained model over folders: write maps (``predict``) or score them (``evaluate``).

Binary checkpoints write foreground-probability maps; multi-class checkpoints (``num_classes =
K >= 2``) write argmax label maps (png) or ``(K, H, W)`` class probabilities (npy); ``evaluate``
and ``calibrate`` handle both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from densecal.atomic import atomic_path, staged_directory
from densecal.data import (
    MASK_DIR_NAMES,
    find_images,
    find_pairs,
    read_image,
    read_label,
    read_mask,
)
from densecal.errors import input_error
from densecal.evaluation import (
    Evaluation,
    EvaluationOptions,
    Evaluator,
    evaluate_maps,
    iter_prediction_pairs,
)
from densecal.evaluation_multiclass import (
    MulticlassEvaluator,
    MulticlassOptions,
    read_distribution,
)
from densecal.methods.binary import SegmentationModule
from densecal.methods.inference import (
    load_module,
    predict_class_probabilities,
    predict_images,
    predict_logits,
)
from densecal.posthoc import FitResult

__all__ = ["calibrate_checkpoint", "evaluate_checkpoint", "evaluate_class_prediction_folder",
           "evaluate_prediction_folder", "iter_predictions", "predict_folder"]

FORMATS = ("png", "npy")
_Item = TypeVar("_Item", bound=tuple)


def _load(checkpoint: str | Path | SegmentationModule) -> SegmentationModule:
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
    module = _load(checkpoint)
    if with_masks:
        items = [(p.name, p.image, p.mask) for p in find_pairs(data)]
    else:
        items = [(name, path, None) for name, path in find_images(data)]
    for (name, _, mask_path), image, prob in _predicted(module, items, predict_images,
                                                         batch_size):
        mask = read_mask(mask_path) if mask_path is not None else None
        if mask is not None and mask.shape != prob.shape:
            raise input_error(name, f"mask size {mask.shape} differs from image size "
                              f"{prob.shape}")
        yield name, image, mask, prob


def _predicted(module: SegmentationModule, items: Sequence[_Item],
               predictor: Callable[[SegmentationModule, list[np.ndarray], int], Iterator[Any]],
               batch_size: int) -> Iterator[tuple[_Item, np.ndarray, Any]]:
    """Read the images of ``items`` (whose second field is the image path) batch by batch and
    yield ``(item, image, predictor output)`` in order."""
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        images = [read_image(item[1]) for item in chunk]
        yield from zip(chunk, images, predictor(module, images, batch_size), strict=True)


def _iter_class_probabilities(module: SegmentationModule, data: str | Path, batch_size: int
                              ) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, (K, H, W) class probabilities)`` for every image of a folder."""
    for (name, _), _, prob in _predicted(module, find_images(data),
                                         predict_class_probabilities, batch_size):
        yield name, prob


def predict_folder(checkpoint: str | Path, data: str | Path, out_dir: str | Path, *,
                   fmt: str = "png", batch_size: int = 16) -> int:
    """Write ``OUT/NAME.png`` (8-bit, round(255·q)) or ``OUT/NAME.npy`` (float32 q) per image.

    For a multi-class checkpoint (``K`` classes, ``K <= 256`` for png): ``OUT/NAME.png`` is the
    8-bit argmax label map (values ``0..K-1``) and ``OUT/NAME.npy`` the float32 ``(K, H, W)``
    class probabilities ``softmax(logits / T)``.

    Maps are staged and moved into ``out_dir`` only when all were written.

    Returns:
        The number of maps written.

    Raises:
        DensecalInputError: unknown format, unreadable checkpoint or images.
    """
    if fmt not in FORMATS:
        raise input_error("--format", f"unknown format {fmt!r}; choose png or npy")
    module = _load(checkpoint)
    if module.task != "binary":
        return _predict_classes(module, data, out_dir, fmt=fmt, batch_size=batch_size)
    n = 0
    with staged_directory(out_dir) as stage:
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
    with staged_directory(out_dir) as stage:
        for name, prob in _iter_class_probabilities(module, data, batch_size):
            if fmt == "png":
                Image.fromarray(prob.argmax(axis=0).astype(np.uint8)).save(stage / f"{name}.png")
            else:
                np.save(stage / f"{name}.npy", prob.astype(np.float32))
            n += 1
    return n


def _has_mask_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is a dataset root with a mask folder (OOD folders may hold images
    only). A folder that has one is paired strictly, so its bad input is reported, not
    silently replaced by all-background masks."""
    names = {p.name for p in Path(folder).iterdir() if p.is_dir()}
    return any(n in MASK_DIR_NAMES or n.endswith("-Mask") for n in names)


def _ood_images(checkpoint: str | Path | SegmentationModule, ood: str | Path, batch_size: int
                ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """OOD images scored against their masks if the folder has them, else all-zero masks."""
    for name, _, mask, prob in iter_predictions(checkpoint, ood,
                                                with_masks=_has_mask_folder(ood),
                                                batch_size=batch_size):
        yield name, prob, mask if mask is not None else np.zeros_like(prob)


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path,
                        options: EvaluationOptions | None = None, *, ood: str | Path | None = None,
                        batch_size: int = 16) -> dict[str, Evaluation]:
    """Evaluate a checkpoint on a folder dataset (split ``test``) and optionally ``ood``.

    Binary checkpoints give ``densecal.evaluate/1`` results; multi-class checkpoints
    ``densecal.evaluate-multiclass/2`` (see :mod:`densecal.evaluation_multiclass`), with the
    label folders read as class indices, the checkpoint's ``ignore_index``, foreground and
    per-volume metrics, and calibration against ``DATA/soft/STEM.npy`` when ``DATA/soft``
    exists.

    Raises:
        DensecalInputError: unreadable checkpoint or data; binary-only options (``protocol``,
            ``confidence``, ``target``, ``threshold`` away from their defaults) with a
            multi-class checkpoint.
    """
    module = _load(checkpoint)
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


def _class_evaluator(options: EvaluationOptions | None, num_classes: int,
                     ignore_index: int | None, name: str, soft_dir: Path | None
                     ) -> MulticlassEvaluator:
    """A multi-class evaluator for the shared options; binary-only options are refused."""
    options = options or EvaluationOptions()
    default = EvaluationOptions()
    for flag, key in (("--protocol", "protocol"), ("--confidence", "confidence"),
                      ("--target", "target"), ("--threshold", "threshold")):
        if getattr(options, key) != getattr(default, key):
            raise input_error(flag, f"{key} {getattr(options, key)!r} applies to binary maps "
                                    f"only; multi-class maps use the top-label confidence "
                                    f"(soft truth is read from a soft/ folder)")
    return MulticlassEvaluator(MulticlassOptions(
        num_classes=num_classes, n_bins=options.n_bins, aggregate=options.aggregate,
        ignore_index=ignore_index), name=name, soft_truth=soft_dir is not None)


def _soft_dir(root: Path) -> Path | None:
    """``ROOT/soft`` if it is a folder (soft ground truth ``STEM.npy``), else None."""
    folder = root / "soft"
    return folder if folder.is_dir() else None


def _add_class_image(evaluator: MulticlassEvaluator, name: str, probs: np.ndarray,
                     label: np.ndarray, soft_dir: Path | None) -> None:
    """Score one image, reading its soft truth ``SOFT/NAME.npy`` when there is a soft folder."""
    soft = None
    if soft_dir is not None:
        soft = read_distribution(soft_dir / f"{name}.npy", evaluator.options.num_classes,
                                 label.shape)
    evaluator.add(name, probs, label, soft)


def _evaluate_classes(module: SegmentationModule, data: str | Path,
                      options: EvaluationOptions | None, batch_size: int, *,
                      ood: bool = False) -> Evaluation:
    """Multi-class evaluation of one folder; an OOD folder without label masks is scored
    against all-background labels (and without soft truth)."""
    config = module.config
    with_labels = not ood or _has_mask_folder(data)
    soft_dir = _soft_dir(Path(data)) if with_labels else None
    evaluator = _class_evaluator(options, config.num_classes, config.ignore_index,
                                 Path(data).name, soft_dir)
    labels = {p.name: p.mask for p in find_pairs(data)} if with_labels else {}
    for name, probs in _iter_class_probabilities(module, data, batch_size):
        label = (read_label(labels[name]) if name in labels
                 else np.zeros(probs.shape[1:], np.int64))
        if label.shape != probs.shape[1:]:
            raise input_error(labels[name], f"label size {label.shape} differs from image "
                                            f"size {probs.shape[1:]}")
        _add_class_image(evaluator, name, probs, label, soft_dir)
    return evaluator.evaluation()


def evaluate_prediction_folder(pred: str | Path, gt: str | Path,
                               options: EvaluationOptions | None = None, *,
                               ood: str | Path | None = None, num_workers: int = 0
                               ) -> dict[str, Evaluation]:
    """Evaluate saved maps against masks (split ``test``); ``ood`` maps against all-zero masks."""
    evaluations = {"test": evaluate_maps(iter_prediction_pairs(pred, gt, num_workers), options,
                                         name=Path(gt).name)}
    if ood is not None:
        from densecal.data import find_predictions, read_prediction

        evaluator = Evaluator(options, name=Path(ood).name)
        for name, path in find_predictions(ood):
            p = read_prediction(path, keep_8bit=True)
            evaluator.add(name, p, np.zeros(p.shape, np.float32))
        evaluations["ood"] = evaluator.evaluation()
    return evaluations


def evaluate_class_prediction_folder(pred: str | Path, gt: str | Path, num_classes: int,
                                     options: EvaluationOptions | None = None, *,
                                     ignore_index: int | None = None,
                                     ood: str | Path | None = None) -> dict[str, Evaluation]:
    """Evaluate saved multi-class probability maps against label maps (split ``test``).

    Args:
        pred: folder of ``NAME.npy`` float ``(K, H, W)`` class probabilities (e.g. written by
            ``densecal predict --format npy`` with a multi-class checkpoint).
        gt: a folder dataset root (mask folder auto-detected; soft truth in ``gt/soft``) or a
            mask folder (soft truth in the sibling ``soft`` folder); masks hold class indices.
        num_classes: K.
        options: ``n_bins`` and ``aggregate`` are used; binary-only options are refused.
        ignore_index: label value left out, or None.
        ood: folder of ``.npy`` maps predicted on OOD images, scored against all-background
            labels.

    Returns:
        ``{"test": ..., ["ood": ...]}`` evaluations of schema ``densecal.evaluate-multiclass/2``.

    Raises:
        DensecalInputError: unpaired or unreadable files, ``.png`` predictions (label maps
            carry no confidence), maps that are not ``(K, H, W)`` distributions, bad soft truth.
    """
    from densecal.data import find_prediction_pairs, find_predictions

    gt = Path(gt)
    if num_classes < 2:
        raise input_error("--num-classes", f"must be at least 2, got {num_classes}")
    pairs = find_prediction_pairs(pred, gt)
    soft_dir = _soft_dir(gt if _has_mask_folder(gt) else gt.parent)
    evaluator = _class_evaluator(options, num_classes, ignore_index, gt.name, soft_dir)
    for pair in pairs:
        label = read_label(pair.mask)
        _add_class_image(evaluator, pair.name, _read_class_map(pair.image, num_classes, label),
                         label, soft_dir)
    evaluations = {"test": evaluator.evaluation()}
    if ood is not None:
        ood_evaluator = _class_evaluator(options, num_classes, ignore_index, Path(ood).name, None)
        for name, path in find_predictions(ood):
            probs = _read_class_map(path, num_classes)
            ood_evaluator.add(name, probs, np.zeros(probs.shape[1:], np.int64))
        evaluations["ood"] = ood_evaluator.evaluation()
    return evaluations


def _read_class_map(path: Path, num_classes: int, label: np.ndarray | None = None) -> np.ndarray:
    """A saved ``(K, H, W)`` probability map (``.npy`` only), matching ``label``'s size."""
    if path.suffix.lower() != ".npy":
        raise input_error(path, "multi-class evaluation needs (K, H, W) .npy class "
                                "probabilities; a label-map image carries no confidence")
    return read_distribution(path, num_classes, None if label is None else label.shape)


def calibrate_checkpoint(checkpoint: str | Path, data: str | Path, out: str | Path | None = None,
                         *, batch_size: int = 16) -> tuple[FitResult, Path]:
    """Fit the checkpoint's post-hoc temperature on a held-out folder dataset and save it.

    The frozen model predicts every image of ``data`` at its original size; T is fitted by
    streamed NLL minimisation (:meth:`densecal.posthoc.TemperatureScaler.fit`) against the masks,
    and a copy of the checkpoint carrying T is written atomically. ``predict`` and ``evaluate``
    then apply ``sigmoid(logits / T)``. The logits are cached on the CPU during the fit (4 bytes
    per pixel of ``data``).

    Args:
        checkpoint: a ``densecal train`` checkpoint.
        data: a folder dataset held out from training (e.g. the validation split).
        out: where to write the calibrated checkpoint (default: ``NAME-calibrated.ckpt`` beside
            the input; the input is never modified unless ``out`` names it).
        batch_size: images per forward pass.

    Returns:
        The fit result (temperature, NLL before and after, passes, whether it hit a bound) and
        the path written.
    """
    checkpoint = Path(checkpoint)
    out = Path(out) if out is not None else checkpoint.with_name(
        f"{checkpoint.stem}-calibrated{checkpoint.suffix}")
    module = _load(checkpoint)
    pairs = [(p.name, p.image, p.mask) for p in find_pairs(data)]

    binary = module.task == "binary"

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for (_, _, mask_path), _, logits in _predicted(module, pairs, predict_logits,
                                                       batch_size):
            mask = read_mask(mask_path) if binary else read_label(mask_path)
            if mask.shape != tuple(logits.shape[-2:]):
                raise input_error(mask_path, f"mask size {mask.shape} differs from image "
                                  f"size {tuple(logits.shape[-2:])}")
            yield logits[None].cpu(), torch.from_numpy(mask)[None]

    result = module.temperature.fit(
        batches(), cache_logits=True, ignore_index=None if binary else module.config.ignore_index)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    for key, value in module.temperature.state_dict().items():
        state["state_dict"][f"temperature.{key}"] = value.cpu()
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    return result, out
