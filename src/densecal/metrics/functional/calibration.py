"""Exact, constant-memory pixel calibration metrics of dense maps (functional form).

Binary maps (default) follow the ASLP evaluation code (Liu et al., ICCV 2023,
github.com/Carlisle-Liu/ASLP, ``ECE.py``: pooled pixels, top-label confidence, 10 equal-width bins
``(lo, hi]``), Guo et al. 2017 (ECE, MCE), Thulasidasan et al. 2019 (OE) and Nixon et al. 2019
(adaptive ECE, "ACE"). Multi-class maps (``task="multiclass"``, softmax over C channels) and
multi-label maps (``task="multilabel"``, C sigmoids) get the same keys, top-label, plus
class-wise calibration: the ECE of each class (Kull et al. 2019; Nixon et al. 2019's static
calibration error is their mean) and the marginal ECE of all class probabilities.

Everything is computed from sufficient statistics: per-bin sums (count, confidence sum,
accuracy sum) in float64, a fine histogram for the equal-mass bins, and scalar sums. These sums
are exact, their size does not depend on the number of pixels or images, and they add across
batches and across DDP ranks. :class:`densecal.metrics.PixelCalibration` keeps them as
torchmetrics states; the functions here compute them in one call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import torch
from torch import Tensor

from densecal.errors import input_error
from densecal.metrics.functional._calibration.binary_kernel import (
    U8_LEVELS,
    CellStatistics,
    cell_statistics,
    codes_eligible,
    match_shapes,
    regroup,
    validate_values,
)
from densecal.metrics.functional._calibration.binary_state import (
    METRIC_KEYS,
    CalibrationState,
    add_part,
    binary_compute,
    binary_reliability,
    image_metrics,
)
from densecal.metrics.functional._calibration.binning import cell_resolution
from densecal.metrics.functional._calibration.class_state import (
    CLASS_KEYS,
    ClasswiseState,
    class_compute,
    class_reliability,
    class_update,
)
from densecal.metrics.functional._calibration.numba_kernel import fused_available, fused_eligible
from densecal.metrics.functional._calibration.options import (
    MAX_BINS,
    Aggregate,
    CalibrationOptions,
    Confidence,
    InputKind,
    TargetType,
    Task,
    parse_options,
)

__all__ = [
    "CLASS_KEYS",
    "MAX_BINS",
    "METRIC_KEYS",
    "Aggregate",
    "CalibrationOptions",
    "CalibrationState",
    "ClasswiseState",
    "Confidence",
    "InputKind",
    "TargetType",
    "Task",
    "binary_update",
    "calibration_state",
    "parse_options",
    "pixel_calibration",
    "reliability_bins",
    "state_compute",
    "state_reliability",
    "state_update",
]

_CHUNK_PIXELS_CPU = 1 << 18  # 2 MiB of float64 per temporary; amortises per-op overhead
_CHUNK_PIXELS_CUDA = 1 << 25  # bounds GPU temporaries without many kernel launches
_CHUNK_PIXELS_FUSED = 1 << 22  # the fused kernel has no per-pixel temporaries
_CHUNK_KEYS = 1 << 22  # per-image mode: bounds rows x histogram keys (32 MiB of float64)


def _rows_per_chunk(options: CalibrationOptions, p_len: int, fused: bool = False) -> int:
    """Images per chunk in per-image mode: about a chunk of pixels, and few enough rows that
    the ``rows x keys`` histograms stay bounded (small images would otherwise pile up)."""
    n_keys = 8 * (cell_resolution(options.n_bins, options.fine_bins) + 1)
    pixels = _CHUNK_PIXELS_FUSED if fused else _CHUNK_PIXELS_CPU
    return max(1, min(_CHUNK_KEYS // n_keys, pixels // max(1, p_len)))


def _chunks(
    preds: Tensor, target: Tensor, per_image: bool, rows_cap: int, fused: bool = False
) -> Iterator[tuple[Tensor, Tensor]]:
    """Split ``(N, P)`` maps into pieces of about ``_CHUNK_PIXELS_*`` pixels.

    Pooled: the pixels are flattened into one row and cut anywhere. Per-image: whole images
    (at least one, at most ``rows_cap`` per piece), since each image's histogram must be
    complete. ``fused``: a kernel of ``_fused`` runs the chunks (larger pieces).
    """
    step = _CHUNK_PIXELS_CUDA if preds.is_cuda else _CHUNK_PIXELS_CPU
    if fused:
        step = _CHUNK_PIXELS_FUSED
    if per_image:
        per = max(1, min(rows_cap, step // max(1, preds.shape[1])))
        yield from zip(preds.split(per), target.split(per), strict=True)
        return
    flat_p, flat_t = preds.reshape(1, -1), target.reshape(1, -1)
    yield from zip(flat_p.split(step, dim=1), flat_t.split(step, dim=1), strict=True)




def binary_update(
    preds: Tensor, target: Tensor, options: CalibrationOptions, *, validate: bool = True
) -> CalibrationState:
    """Sufficient statistics of one batch of maps.

    Args:
        preds: ``(N, *S)`` or ``(N, 1, *S)`` probabilities or logits (floating point).
        target: same shape (or with/without the singleton channel), values in [0, 1] except
            ``ignore_index`` pixels.
        options: parsed options.
        validate: check finiteness and ranges (one host sync); shapes are always checked.

    Returns:
        The batch's :class:`CalibrationState` on ``preds.device``.

    Raises:
        DensecalInputError: bad shapes, dtypes or values (message names the argument).
    """
    preds, target = match_shapes(preds, target, uint8=options.input is InputKind.PROBS)
    codes = codes_eligible(preds, target, options)
    if preds.dtype == torch.uint8 and not codes:
        preds = preds.to(torch.float32).div_(U8_LEVELS)  # the float32 map v / 255
    fused = codes or fused_eligible(preds, target, options)
    # the numba kernels count bad values on their pass: no separate check pass before them
    checked_in_pass = fused and preds.device.type == "cpu" and fused_available() and (
        options.input is InputKind.PROBS)  # fmt: skip
    if validate and not checked_in_pass:
        validate_values(preds, target, options)
    state = CalibrationState.zeros(options.n_bins, options.fine_bins, preds.device)
    per_image = options.aggregate is Aggregate.PER_IMAGE
    pooled: CellStatistics | None = None  # cell sums add up; regrouped once at the end
    rows_cap = _rows_per_chunk(options, p_len=preds.shape[1], fused=fused)
    invalid = 0
    for p, t in _chunks(preds, target, per_image, rows_cap, fused):
        if p.numel() == 0:
            continue
        cells = cell_statistics(p, t, options, rows=p.shape[0])
        invalid += cells.invalid
        if per_image:
            part = regroup(cells, options)
            add_part(state, part)
            image_sums, image_count = image_metrics(part, options.n_bins)
            state.image_sums.add_(image_sums)
            state.image_count.add_(image_count)
        else:
            pooled = cells if pooled is None else pooled + cells
    if validate and invalid:
        validate_values(preds, target, options)  # raises the error of the first bad value kind
    if pooled is not None:
        add_part(state, regroup(pooled, options))
    return state




def calibration_state(options: CalibrationOptions) -> dict[str, Tensor]:
    """The empty sum state of :class:`~densecal.metrics.PixelCalibration` for ``options``.

    Returns:
        ``{name: zero tensor}`` in update order: the fields of :class:`CalibrationState` and,
        for multi-class / multi-label maps, of :class:`ClasswiseState`. Every entry is a float64
        sum, so states of different ranks or images add up (``dist_reduce_fx="sum"``).
    """
    state = CalibrationState.zeros(options.n_bins, options.fine_bins)._asdict()
    if options.num_classes is not None:
        state.update(ClasswiseState.zeros(options.num_classes, options.n_bins)._asdict())
    return state


def state_update(preds: Tensor, target: Tensor, options: CalibrationOptions, *,
                 validate: bool = True) -> dict[str, Tensor]:
    """The sums of one batch, keyed as :func:`calibration_state` (to be added to it).

    Raises:
        DensecalInputError: as :func:`pixel_calibration`.
    """
    if options.task is Task.BINARY:
        return binary_update(preds, target, options, validate=validate)._asdict()
    top, classes = class_update(preds, target, options, validate=validate)
    return {**top._asdict(), **classes._asdict()}


def _states(state: Mapping[str, Tensor]) -> tuple[CalibrationState, ClasswiseState | None]:
    top = CalibrationState(*(state[name] for name in CalibrationState._fields))
    if ClasswiseState._fields[0] not in state:
        return top, None
    return top, ClasswiseState(*(state[name] for name in ClasswiseState._fields))


def state_compute(state: Mapping[str, Tensor], options: CalibrationOptions, *,
                  failure: bool = True) -> dict[str, Tensor]:
    """The metrics of a sum state (the keys of :func:`pixel_calibration`; without the failure-
    detection keys when ``failure`` is false)."""
    top, classes = _states(state)
    if classes is None:
        return binary_compute(top, options.aggregate, options.confidence, failure=failure)
    return class_compute(top, classes, options, failure=failure)


def state_reliability(state: Mapping[str, Tensor], *, per_class: bool = False
                      ) -> dict[str, Tensor]:
    """The reliability table of a sum state (the keys of :func:`reliability_bins`).

    Raises:
        DensecalInputError: ``per_class`` for a binary state (no classes).
    """
    top, classes = _states(state)
    if not per_class:
        return binary_reliability(top)
    if classes is None:
        raise input_error("task", "reliability_classwise needs 'multiclass' or 'multilabel'")
    return class_reliability(classes)


_OPTIONS_DOC = """
        n_bins: number of equal-width bins on [0, 1] (also the number of equal-mass bins of
            ACE), >= 1. Bins are right-closed ``(k/n, (k+1)/n]`` with 0 in the first bin (ASLP
            code); a value equal to an edge k/n (in the precision of ``preds``) goes to bin
            k - 1.
        input: ``"probs"`` (q in [0, 1]) or ``"logits"`` (q = sigmoid(preds), in float64).
        confidence: ``"top-label"``: c = max(q, 1 - q) binned against the correctness of the
            prediction 1[q >= threshold]; ``"positive"``: c = q binned against the frequency of
            y = 1 (torchmetrics' binary convention; ``accuracy`` stays the top-label accuracy).
        aggregate: ``"pooled"`` (one histogram over all pixels, ASLP) or ``"per-image"`` (mean
            over images of each image's metrics, MONAI's convention; images whose pixels are
            all ignored are skipped).
        target_type: correctness rule. ``"hard"``: pred == 1[y >= 0.5]; ``"soft"``: expected
            accuracy y 1[pred] + (1 - y) 1[not pred]; ``"strict"``: ASLP code's raw-GT rule,
            correct only where y is exactly 0 or 1 and equals pred. In positive mode the bin
            accuracy is 1[y >= 0.5], y, or 1[y == 1] respectively.
        threshold: foreground decision threshold on q, in [0, 1].
        ignore_index: target value whose pixels are excluded everywhere (e.g. 255).
        fine_bins: uniform bins of the fine histogram behind ACE (default 4096).
        task: ``"binary"`` (one foreground map), ``"multiclass"`` (C channels, softmax: with
            ``input="probs"`` they must sum to 1 over C within ``max(1e-3, C eps)``; with
            ``"logits"`` the softmax is taken in float64) or ``"multilabel"`` (C independent
            foreground maps; sigmoid for logits). ``threshold`` and ``confidence`` apply to
            binary and multi-label decisions; multi-class predictions are argmax_k p_k and
            only ``confidence="top-label"`` is accepted.
        num_classes: C, required for multiclass (>= 2) / multilabel, checked against the
            channel dim of ``preds``; must be None for binary.
        include_background: (multiclass / multilabel; MONAI's name, class 0 is background)
            False: the top-label keys use only pixels whose target class is not 0 (soft
            maps: whose argmax target is not 0; multi-label: the elements of classes 1..C-1),
            the "foreground-only ECE" of medical segmentation, and ``classwise_ece`` /
            ``marginal_ece`` leave class 0 out. ``ece_class`` always reports all C classes.
        validate_args: check values (finite, in range, class indices, channel sums); costs
            one device-to-host sync."""


_F = TypeVar("_F", bound=Callable[..., object])


def _options_doc(func: _F) -> _F:
    """Insert the shared description of the options into ``func``'s docstring."""
    if func.__doc__:  # None under python -OO
        func.__doc__ = func.__doc__.replace("        {options}", _OPTIONS_DOC.strip("\n"))
    return func


def _parse(
    n_bins: int, input: str, confidence: str, aggregate: str, target_type: str,
    threshold: float, ignore_index: float | None, fine_bins: int, task: str,
    num_classes: int | None, include_background: bool,
):  # fmt: skip
    return parse_options(
        n_bins=n_bins, input=input, confidence=confidence, aggregate=aggregate,
        target_type=target_type, threshold=threshold, ignore_index=ignore_index,
        fine_bins=fine_bins, task=task, num_classes=num_classes,
        include_background=include_background,
    )  # fmt: skip


@_options_doc
def pixel_calibration(
    preds: Tensor,
    target: Tensor,
    *,
    n_bins: int = 10,
    input: str = "probs",
    confidence: str = "top-label",
    aggregate: str = "pooled",
    target_type: str = "hard",
    threshold: float = 0.5,
    ignore_index: float | None = None,
    fine_bins: int = 4096,
    task: str = "binary",
    num_classes: int | None = None,
    include_background: bool = True,
    validate_args: bool = True,
) -> dict[str, Tensor]:
    """Calibration metrics of dense maps (ECE, MCE, OE, ACE, Brier, NLL, accuracy, class-wise).

    With n_b pixels in bin b (N in all), mean confidence conf_b and accuracy acc_b:

    - ECE = sum_b (n_b/N) |conf_b - acc_b| (Guo et al. 2017; ASLP code ``ECE_EW``),
    - MCE = max over non-empty bins |conf_b - acc_b| (Guo et al. 2017),
    - OE = sum_b (n_b/N) conf_b max(conf_b - acc_b, 0) (ASLP code; Thulasidasan et al. 2019),
    - ACE = the same as ECE over ``n_bins`` equal-mass bins of the sorted confidences, weighted
      by mass (Nixon et al. 2019); computed from a fine histogram, exact for 8-bit maps and
      within ``(n_bins - 1)(1 + 1/fine_bins) max_j c_j / N`` of the exactly sorted value for
      float maps (c_j: pixels in the fullest fine bin); see ``binning.equal_mass_ace``,
    - Brier = mean (q - y)^2 and NLL = mean BCE(q, y) with q clamped to [1e-7, 1 - 1e-7], on
      the target as given (soft targets allowed) whatever ``target_type``/``confidence``,
    - accuracy = mean top-label correctness of 1[q >= threshold] under ``target_type``.

    Differences from the ASLP code: sums are float64 (the code accumulates float32 counts,
    inexact beyond 2^24 pixels per bin) and bin means divide by n_b, not n_b + 1e-6.

    Multi-class maps (``task="multiclass"``; p_k, k < C, summing to 1): the same keys are
    top-label (Guo et al. 2017): confidence max_k p_k, prediction argmax_k p_k, correct when it
    is the target class (soft / one-hot map y: expected accuracy y_pred; ``"hard"`` takes the
    argmax of the map as the class; ``"strict"``: y_pred == 1). ``brier`` is the multi-class
    Brier score, the mean over pixels of sum_k (p_k - y_k)^2 (Brier 1950; in [0, 2]), and
    ``nll`` the mean of -sum_k y_k log max(p_k, 1e-7) (= -log p_y for class indices), both on
    the target as given. Multi-label maps (``task="multilabel"``): every (pixel, class) element
    is one binary decision, and the keys are the binary metrics of all elements pooled
    (confidence max(q, 1 - q), per-element Brier and BCE). Both tasks add:

    - ``ece_class``: ``(C,)``, the class-wise ECE of each class k, the positive-mode ECE of
      p_k against 1[y = k] (soft: y_k) over every valid pixel (Kull et al. 2019, Eq. in
      Sec. 3, "classwise-ECE"; Nixon et al. 2019's per-class term). Class 0 is always
      reported. Equal-mass (ACE-style) bins are not kept per class (constant state: only
      ``(C, n_bins)`` sums),
    - ``classwise_ece``: the mean of ``ece_class`` over the included classes (NaN entries
      skipped): Kull et al. 2019's classwise-ECE = Nixon et al. 2019's static calibration
      error (SCE),
    - ``marginal_ece``: the ECE of ONE positive-mode histogram of all (p_k, 1[y = k]) pairs of
      the included classes pooled, i.e. the marginal calibration of every class probability
      (each pixel counts once per class; Kumar et al. 2019's marginal calibration error with
      the l1 norm and a shared binning).

    Aggregation of the class-wise keys: pooled, one histogram per class over every valid
    pixel of the dataset (a class absent from all targets still has an ECE, mean p_k).
    Per-image (MONAI's ``CalibrationErrorMetric`` with ``metric_reduction="mean_batch"``):
    ``ece_class[k]`` is the mean over every image with at least one valid pixel (element) of
    that image's class-k ECE, including images where class k is absent from the target (its
    ECE there is the mean of p_k, a penalty for probability on absent classes); ``marginal_ece``
    the mean of the images' marginal ECEs; ``classwise_ece`` the mean of ``ece_class``.

    Args:
        preds: binary: ``(N, *S)`` or ``(N, 1, *S)``; multiclass / multilabel: ``(N, C, *S)``
            floating-point maps (probabilities or logits). Binary maps may also be uint8
            (8-bit PNG predictions, ``input="probs"`` only): a value v is the
            probability ``float32(v) / 255``, and every result equals that of the float32
            maps ``preds.float() / 255`` (with hard integer targets and no
            ``ignore_index``, from a (value, label) histogram: one pass, ~3x faster).
        target: binary: same shape (the singleton channel may be absent on either side),
            values in [0, 1] (may be soft), any dtype. Multiclass: class indices ``(N, *S)``
            (or ``(N, 1, *S)``) of an integer dtype in [0, C), or a one-hot / soft probability
            map ``(N, C, *S)`` summing to 1 over C. Multilabel: ``(N, C, *S)`` in [0, 1]. Pixels
            (elements for multilabel; multi-class maps: pixels with every channel) equal to
            ``ignore_index`` are excluded everywhere.
        {options}

    Returns:
        ``{"ece", "mce", "oe", "ace", "brier", "nll", "accuracy"}``: 0-dim float64 tensors on
        ``preds.device``, fractions in [0, 1] (NaN if no pixel is left); for multiclass /
        multilabel also ``"ece_class"`` (float64 ``(C,)``), ``"classwise_ece"`` and
        ``"marginal_ece"`` (0-dim).

    Raises:
        DensecalInputError: bad option, shape mismatch, channel dim != ``num_classes``,
            NaN/Inf values, probabilities or target outside [0, 1], multi-class probabilities
            or target maps not summing to 1, class indices negative or >= ``num_classes``.

    Example:
        >>> import torch
        >>> q = torch.tensor([[0.9, 0.8, 0.3, 0.6]])  # confidences 0.9, 0.8, 0.7, 0.6
        >>> y = torch.tensor([[1, 0, 0, 1]])  # correct: yes, no, yes, yes
        >>> m = pixel_calibration(q, y, n_bins=4)  # bins (.5, .75]: 2 px, (.75, 1]: 2 px
        >>> {k: round(v.item(), 6) for k, v in m.items()}  # doctest: +NORMALIZE_WHITESPACE
        {'ece': 0.35, 'mce': 0.35, 'oe': 0.14875, 'ace': 0.4, 'brier': 0.225,
         'nll': 0.645575, 'accuracy': 0.75}
        >>> p = torch.tensor([[[0.5, 0.25], [0.25, 0.75], [0.25, 0.0]]])  # (1, 3 classes, 2 px)
        >>> m = pixel_calibration(p, torch.tensor([[0, 2]]), n_bins=4, task="multiclass",
        ...                       num_classes=3)
        >>> m["ece"].item(), m["ece_class"].tolist()  # px 1 right at 0.5, px 2 wrong at 0.75
        (0.625, [0.375, 0.5, 0.375])
    """
    options = _parse(n_bins, input, confidence, aggregate, target_type, threshold,
                     ignore_index, fine_bins, task, num_classes, include_background)
    if options.task is Task.BINARY:
        state = binary_update(preds, target, options, validate=validate_args)
        return binary_compute(state, options.aggregate, options.confidence)
    return class_compute(*class_update(preds, target, options, validate=validate_args), options)


@_options_doc
def reliability_bins(
    preds: Tensor,
    target: Tensor,
    *,
    n_bins: int = 10,
    input: str = "probs",
    confidence: str = "top-label",
    aggregate: str = "pooled",
    target_type: str = "hard",
    threshold: float = 0.5,
    ignore_index: float | None = None,
    fine_bins: int = 4096,
    task: str = "binary",
    num_classes: int | None = None,
    include_background: bool = True,
    per_class: bool = False,
    validate_args: bool = True,
) -> dict[str, Tensor]:
    """Reliability-diagram table of the pooled equal-width bins.

    The bins are always pooled over every pixel (``aggregate`` is accepted for a uniform
    signature and ignored). Bin b covers ``(bin_lower[b], bin_upper[b]]`` (0 included in bin 0).
    Multi-class / multi-label: the top-label table (the bins of ``ece``), or with
    ``per_class=True`` one positive-mode table per class (the bins of ``ece_class``).

    Args:
        preds: as :func:`pixel_calibration`.
        target: as :func:`pixel_calibration`.
        {options}
        per_class: (multiclass / multilabel only) return ``(C, n_bins)`` per-class rows:
            mean p_k and frequency of class k per bin of p_k.

    Returns:
        ``bin_lower``, ``bin_upper`` (edges k/n, float64 ``(n_bins,)``), ``count`` (pixels per
        bin), ``confidence`` (mean confidence) and ``accuracy`` (mean correctness, or
        frequency of y = 1 in positive mode), all float64 ``(n_bins,)`` (``(C, n_bins)`` with
        ``per_class``); ``confidence`` and ``accuracy`` are NaN for empty bins.

    Raises:
        DensecalInputError: as :func:`pixel_calibration`; ``per_class`` with binary maps.

    Example:
        >>> import torch
        >>> q = torch.tensor([[0.9, 0.8, 0.3, 0.6]])
        >>> table = reliability_bins(q, torch.tensor([[1, 0, 0, 1]]), n_bins=4)
        >>> table["count"].tolist(), table["accuracy"].tolist()
        ([0.0, 0.0, 2.0, 2.0], [nan, nan, 1.0, 0.5])
    """
    options = _parse(n_bins, input, confidence, aggregate, target_type, threshold,
                     ignore_index, fine_bins, task, num_classes, include_background)
    options = dataclasses.replace(options, aggregate=Aggregate.POOLED)  # bins are pooled
    if options.task is Task.BINARY:
        if per_class:
            raise input_error("per_class", "needs task='multiclass' or 'multilabel'")
        return binary_reliability(
            binary_update(preds, target, options, validate=validate_args)
        )
    state, cstate = class_update(preds, target, options, validate=validate_args)
    return class_reliability(cstate) if per_class else binary_reliability(state)
