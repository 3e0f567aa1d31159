"""Score folders of saved maps: (prediction, ground truth) file pairs to :class:`Evaluation`.

The path of ``densecal evaluate --pred --gt``: :func:`densecal.data.find_prediction_pairs`
pairs the files by stem, :func:`iter_prediction_pairs` decodes them (in DataLoader workers when
asked), and an evaluator (:mod:`densecal.evaluation.binary` or
:mod:`densecal.evaluation.multiclass`) turns them into results. No model is involved.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densecal._checks import check_int
from densecal.data.pairs import MASK_DIR_NAMES, find_prediction_pairs, find_predictions
from densecal.data.readers import read_distribution, read_label, read_mask, read_prediction
from densecal.errors import input_error, naming_sources
from densecal.evaluation.binary import Evaluator, evaluate_maps, measure_sod
from densecal.evaluation.multiclass import MulticlassEvaluator
from densecal.evaluation.options import EvaluationOptions, MulticlassOptions
from densecal.evaluation.schema import Evaluation
from densecal.metrics.segmentation import SODMetrics
from densecal.progress import track

__all__ = [
    "add_class_image",
    "class_evaluator",
    "evaluate_class_prediction_folder",
    "evaluate_prediction_folder",
    "has_mask_folder",
    "iter_prediction_pairs",
    "soft_truth_dir",
]


def iter_prediction_pairs(pred_dir: str | Path, gt_dir: str | Path,
                          num_workers: int = 0) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Decode saved prediction maps and masks, paired by stem, in DataLoader workers.

    Args:
        pred_dir: folder of ``.png`` (value/255) or ``.npy`` (probabilities) maps.
        gt_dir: folder of masks, or a folder dataset root (mask folder auto-detected).
        num_workers: decoding processes (0 decodes in this process).

    Yields:
        ``(name, prediction (H, W), ground truth (H, W) float32)`` in name order; an 8-bit
        PNG prediction comes as its uint8 levels (``v / 255``, see :meth:`Evaluator.add`),
        other predictions as float32 probabilities.
    """
    return _decoded(find_prediction_pairs(pred_dir, gt_dir), num_workers)


def _decoded(pairs: list[Any], num_workers: int, sod: SODMetrics | None = None
             ) -> Iterator[tuple[Any, ...]]:
    """Decoded pairs in name order; with ``sod``, each also carries its SOD measures, computed
    in the worker that decoded it (:func:`~densecal.evaluation.binary.measure_sod`)."""
    check_int("--num-workers", num_workers, low=0, high=1024)
    dataset = _PredictionPairs(pairs, sod)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False,
                                         num_workers=num_workers, collate_fn=_identity)
    yield from track(loader, "evaluate", total=len(pairs))


class _PredictionPairs(torch.utils.data.Dataset):
    """Decodes (prediction, mask) pairs; module-level so DataLoader workers can pickle it."""

    def __init__(self, pairs: list[Any], sod: SODMetrics | None = None) -> None:
        self.pairs = pairs
        self.sod = sod

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        pair = self.pairs[i]
        pred, gt = read_prediction(pair.image, keep_8bit=True), read_mask(pair.mask)
        if self.sod is None:
            return pair.name, pred, gt
        return pair.name, pred, gt, measure_sod(self.sod, pred, gt)


def _identity(item: Any) -> Any:
    return item


def has_mask_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is a dataset root with a mask folder (OOD folders may hold images
    only). A folder that has one is paired strictly, so its bad input is reported, not
    silently replaced by all-background masks."""
    names = {p.name for p in Path(folder).iterdir() if p.is_dir()}
    return any(n in MASK_DIR_NAMES or n.endswith("-Mask") for n in names)


def class_evaluator(options: EvaluationOptions | None, num_classes: int,
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


def soft_truth_dir(root: Path) -> Path | None:
    """``ROOT/soft`` if it is a folder (soft ground truth ``STEM.npy``), else None."""
    folder = root / "soft"
    return folder if folder.is_dir() else None


def add_class_image(evaluator: MulticlassEvaluator, name: str, probs: np.ndarray,
                     label: np.ndarray, soft_dir: Path | None) -> None:
    """Score one image, reading its soft truth ``SOFT/NAME.npy`` when there is a soft folder."""
    soft = None
    if soft_dir is not None:
        soft = read_distribution(soft_dir / f"{name}.npy", evaluator.options.num_classes,
                                 label.shape)
    evaluator.add(name, probs, label, soft)


def evaluate_prediction_folder(pred: str | Path, gt: str | Path,
                               options: EvaluationOptions | None = None, *,
                               ood: str | Path | None = None, num_workers: int = 0
                               ) -> dict[str, Evaluation]:
    """Evaluate saved maps against masks (split ``test``); ``ood`` maps against all-zero masks."""
    options = options or EvaluationOptions()
    pairs = find_prediction_pairs(pred, gt)
    # with workers, the SOD measures (most of the time) run in them, beside the decoding
    sod = (SODMetrics(protocol=options.protocol, threshold=options.threshold)
           if num_workers > 0 and options.measures == "all" else None)
    with naming_sources({p.name: _pair_files(p) for p in pairs}):
        evaluations = {"test": evaluate_maps(_decoded(pairs, num_workers, sod), options,
                                             name=Path(gt).name)}
    if ood is not None:
        evaluator = Evaluator(options, name=Path(ood).name)
        maps = find_predictions(ood)
        with naming_sources({name: str(path) for name, path in maps}):
            for name, path in track(maps, "evaluate ood"):
                p = read_prediction(path, keep_8bit=True)
                evaluator.add(name, p, np.zeros(p.shape, np.float32))
        evaluations["ood"] = evaluator.evaluation()
    return evaluations


def _pair_files(pair: Any) -> str:
    return f"{pair.image} (ground truth {pair.mask})"


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
        ``{"test": ..., ["ood": ...]}`` evaluations of schema ``densecal.evaluate-multiclass/3``.

    Raises:
        DensecalInputError: unpaired or unreadable files, ``.png`` predictions (label maps
            carry no confidence), maps that are not ``(K, H, W)`` distributions, bad soft truth.
    """
    gt = Path(gt)
    if num_classes < 2:
        raise input_error("--num-classes", f"must be at least 2, got {num_classes}")
    pairs = find_prediction_pairs(pred, gt)
    soft_dir = soft_truth_dir(gt if has_mask_folder(gt) else gt.parent)
    evaluator = class_evaluator(options, num_classes, ignore_index, gt.name, soft_dir)
    with naming_sources({p.name: _pair_files(p) for p in pairs}):
        for pair in track(pairs, "evaluate"):
            label = read_label(pair.mask)
            add_class_image(evaluator, pair.name,
                            _read_class_map(pair.image, num_classes, label), label, soft_dir)
    evaluations = {"test": evaluator.evaluation()}
    if ood is not None:
        ood_evaluator = class_evaluator(options, num_classes, ignore_index, Path(ood).name, None)
        maps = find_predictions(ood)
        with naming_sources({name: str(path) for name, path in maps}):
            for name, path in track(maps, "evaluate ood"):
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
