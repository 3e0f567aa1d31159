"""Sufficient statistics of the multi-class and multi-label calibration metrics.

A C-channel batch yields two states that add (``sum`` reduce, constant size):

- the top-label :class:`~densecal.metrics.functional._binary.CalibrationState` (same fields as
  for binary maps, so ``ece, mce, oe, ace, brier, nll, accuracy`` are computed by the binary
  code): multi-class maps bin c = max_k p_k against the correctness of argmax_k p_k;
  multi-label maps are binary decisions per (pixel, class) element, i.e. exactly the binary
  metrics of the ``(N, C P)`` map of elements;
- :class:`ClasswiseState`: ``(C, n_bins)`` positive-mode bin sums of each class and per-image
  running sums, for ``ece_class``, ``classwise_ece`` and ``marginal_ece``.

Batches are walked in blocks of whole images (or pixel ranges of one image when an image has
more than a chunk of elements), so temporaries stay bounded and nothing loops over classes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from densecal.metrics.functional._calibration.binary_kernel import (
    CellStatistics,
    regroup,
    validate_values,
)
from densecal.metrics.functional._calibration.binary_state import (
    CalibrationState,
    add_part,
    bin_table,
    binary_compute,
    image_metrics,
)
from densecal.metrics.functional._calibration.binning import cell_resolution, uniform_bin_errors
from densecal.metrics.functional._calibration.class_kernel import (
    ClassSums,
    class_errors,
    match_class_shapes,
    multiclass_statistics,
    multilabel_statistics,
    validate_class_values,
)
from densecal.metrics.functional._calibration.options import Aggregate, CalibrationOptions, Task

__all__ = ["CLASS_KEYS", "ClasswiseState", "class_compute", "class_reliability", "class_update"]

CLASS_KEYS = ("ece_class", "classwise_ece", "marginal_ece")
"""Keys added to the metrics of multi-class / multi-label maps, after ``METRIC_KEYS``."""

_CHUNK_ELEMENTS_CPU = 1 << 18  # (pixel, class) elements per block: 2 MiB per float64 temporary
_CHUNK_ELEMENTS_CUDA = 1 << 25
_CHUNK_KEYS = 1 << 22  # per-image mode: bounds rows x histogram keys (32 MiB of float64)


class ClasswiseState(NamedTuple):
    """Class-wise sufficient statistics; every field adds (``sum`` reduce). All float64.

    Attributes:
        class_count: ``(C, n_bins)`` elements (pixel, class k) per equal-width bin of p_k.
        class_conf: ``(C, n_bins)`` sum of p_k per bin.
        class_acc: ``(C, n_bins)`` sum of 1[y = k] (soft: y_k) per bin.
        image_class_ece: ``(C,)`` sum over images of each image's ECE of class k.
        image_class_count: ``(C,)`` images where class k has at least one valid element.
        image_marginal: ``()`` sum over images of each image's marginal ECE.
        image_marginal_count: ``()`` images with at least one valid element of an included
            class. The ``image_*`` fields are filled in per-image mode only.
    """

    class_count: Tensor
    class_conf: Tensor
    class_acc: Tensor
    image_class_ece: Tensor
    image_class_count: Tensor
    image_marginal: Tensor
    image_marginal_count: Tensor

    @staticmethod
    def zeros(
        num_classes: int, n_bins: int, device: torch.device | None = None
    ) -> ClasswiseState:
        """An empty state (the identity of addition)."""

        def z(*shape: int) -> Tensor:
            return torch.zeros(shape, dtype=torch.float64, device=device)

        c, b = num_classes, n_bins
        return ClasswiseState(z(c, b), z(c, b), z(c, b), z(c), z(c), z(), z())


def _blocks(
    shape: tuple[int, int, int], budget: int, rows_cap: int
) -> Iterator[tuple[slice, tuple[slice, ...]]]:
    """Blocks of an ``(N, C, P)`` batch: (images, pixel ranges of those images).

    Whole images while ``C P <= budget`` (at most ``rows_cap`` per block); otherwise one image
    per block, cut into pixel ranges of at most ``budget`` elements. A block's pieces together
    hold its images completely (per-image metrics are finished after the last piece).
    """
    n, c, p = shape
    if c * p <= budget:
        per = max(1, min(rows_cap, budget // max(1, c * p)))
        for i in range(0, n, per):
            yield slice(i, i + per), (slice(None),)
        return
    step = max(1, budget // c)
    pieces = tuple(slice(j, j + step) for j in range(0, p, step))
    for i in range(n):
        yield slice(i, i + 1), pieces


def _take(x: Tensor, images: slice, pixels: slice) -> Tensor:
    """Block of an ``(N, P)`` or ``(N, C, P)`` tensor."""
    return x[images, pixels] if x.ndim == 2 else x[images, :, pixels]


def _add_classes(
    cstate: ClasswiseState, sums: ClassSums, options: CalibrationOptions, per_image: bool
) -> None:
    """Add a block's class sums (and, per image, each image's class-wise ECEs) in place."""
    for acc, new in zip(cstate[:3], sums, strict=True):
        acc.add_(new.sum(0))
    if not per_image:
        return
    ece_class, marginal = class_errors(sums, options.include_background)
    present = sums.count.sum(-1) > 0  # (R, C)
    cstate.image_class_ece.add_(ece_class.where(present, 0.0).sum(0))
    cstate.image_class_count.add_(present.sum(0))
    first = 0 if options.include_background else 1
    seen = present[:, first:].any(-1)
    cstate.image_marginal.add_(marginal.where(seen, 0.0).sum())
    cstate.image_marginal_count.add_(seen.sum())


def _add_top(state: CalibrationState, cells: CellStatistics, options: CalibrationOptions) -> None:
    """Add a block's top-label cell sums into ``state`` (and per-image metrics, per image)."""
    part = regroup(cells, options)
    add_part(state, part)
    if options.aggregate is Aggregate.PER_IMAGE:
        image_sums, image_count = image_metrics(part, options.n_bins)
        state.image_sums.add_(image_sums)
        state.image_count.add_(image_count)


def _sum(parts: Iterator[tuple[CellStatistics, ClassSums]]) -> tuple[CellStatistics, ClassSums]:
    """Add up the sums of a block's pieces (at least one)."""
    cells, classes = next(parts)
    for piece_cells, piece_classes in parts:
        cells, classes = cells + piece_cells, classes + piece_classes
    return cells, classes


def class_update(
    preds: Tensor, target: Tensor, options: CalibrationOptions, *, validate: bool = True
) -> tuple[CalibrationState, ClasswiseState]:
    """Sufficient statistics of one batch of C-channel maps.

    Args:
        preds: ``(N, C, *S)`` probabilities or logits (floating point).
        target: multi-class: ``(N, *S)`` integer class indices or ``(N, C, *S)`` probability
            map; multi-label: ``(N, C, *S)`` in [0, 1]; ``ignore_index`` allowed.
        options: parsed options with ``task`` multiclass or multilabel.
        validate: check values (one host sync); shapes are always checked.

    Returns:
        The batch's top-label :class:`CalibrationState` and :class:`ClasswiseState`.

    Raises:
        DensecalInputError: bad shapes, dtypes or values (message names the argument).
    """
    preds, target = match_class_shapes(preds, target, options)
    n, c, p_len = preds.shape
    multilabel = options.task is Task.MULTILABEL
    if validate:
        if multilabel:
            validate_values(preds.reshape(n, -1), target.reshape(n, -1), options)
        else:
            validate_class_values(preds, target, options)
    per_image = options.aggregate is Aggregate.PER_IMAGE
    state = CalibrationState.zeros(options.n_bins, options.fine_bins, preds.device)
    cstate = ClasswiseState.zeros(c, options.n_bins, preds.device)
    kernel = multilabel_statistics if multilabel else multiclass_statistics

    def piece(p: Tensor, t: Tensor) -> tuple[CellStatistics, ClassSums]:
        return kernel(p, t, options, pooled=not per_image)

    # per image: top-label keys (at most 8 per cell, multi-label) and class keys per row
    width = 8 * (cell_resolution(options.n_bins, options.fine_bins) + 1) + 2 * c * options.n_bins
    rows_cap = max(1, _CHUNK_KEYS // width) if per_image else n
    budget = _CHUNK_ELEMENTS_CUDA if preds.is_cuda else _CHUNK_ELEMENTS_CPU
    pooled_cells: CellStatistics | None = None
    pooled_classes: ClassSums | None = None
    for images, pixels in _blocks((n, c, p_len), budget, rows_cap):
        if preds[images].numel() == 0:
            continue
        cells, classes = _sum(
            piece(_take(preds, images, j), _take(target, images, j)) for j in pixels
        )
        if per_image:
            _add_top(state, cells, options)
            _add_classes(cstate, classes, options, per_image=True)
            continue
        pooled_cells = cells if pooled_cells is None else pooled_cells + cells
        pooled_classes = classes if pooled_classes is None else pooled_classes + classes
    if pooled_cells is not None:
        _add_top(state, pooled_cells, options)
    if pooled_classes is not None:
        _add_classes(cstate, pooled_classes, options, per_image=False)
    return state, cstate


def class_compute(
    state: CalibrationState, cstate: ClasswiseState, options: CalibrationOptions, *,
    failure: bool = True,
) -> dict[str, Tensor]:
    """Metrics of C-channel maps: the top-label keys, then ``ece_class``, ``classwise_ece``
    and ``marginal_ece`` (see :func:`densecal.metrics.functional.pixel_calibration`)."""
    out = binary_compute(state, options.aggregate, options.confidence, failure=failure)
    first = 0 if options.include_background else 1
    if options.aggregate is Aggregate.PER_IMAGE:
        ece_class = cstate.image_class_ece / cstate.image_class_count
        marginal = cstate.image_marginal / cstate.image_marginal_count
    else:
        ece_class = uniform_bin_errors(cstate.class_count, cstate.class_conf, cstate.class_acc)
        ece_class = ece_class["ece"]
        pooled = (x[first:].sum(0, keepdim=True) for x in cstate[:3])
        marginal = uniform_bin_errors(*pooled)["ece"][0]
    out["ece_class"] = ece_class
    out["classwise_ece"] = ece_class[first:].nanmean()
    out["marginal_ece"] = marginal
    return out


def class_reliability(cstate: ClasswiseState) -> dict[str, Tensor]:
    """Per-class reliability table: ``bin_lower``/``bin_upper`` ``(n_bins,)``, ``count``,
    ``confidence``, ``accuracy`` ``(C, n_bins)`` (positive mode: mean p_k, frequency of k)."""
    return bin_table(cstate.class_count, cstate.class_conf, cstate.class_acc)
