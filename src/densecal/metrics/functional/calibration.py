"""Exact, constant-memory pixel calibration metrics for binary dense maps (functional form).

The metrics follow the ASLP evaluation code (Liu et al., ICCV 2023, github.com/Carlisle-Liu/ASLP,
``ECE.py``: pooled pixels, top-label confidence, 10 equal-width bins ``(lo, hi]``), Guo et al.
2017 (ECE, MCE), Thulasidasan et al. 2019 (OE) and Nixon et al. 2019 (adaptive ECE, "ACE").

Everything is computed from sufficient statistics: per-bin sums (count, confidence sum,
accuracy sum) in float64, a fine histogram for the equal-mass bins, and scalar sums. These sums
are exact, their size does not depend on the number of pixels or images, and they add across
batches and across DDP ranks. :class:`densecal.metrics.PixelCalibration` keeps them as
torchmetrics states; the functions here compute them in one call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import NamedTuple, TypeVar

import torch
from torch import Tensor

from densecal.metrics.functional._binning import (
    bin_edges,
    cell_resolution,
    equal_mass_ace,
    uniform_bin_errors,
)
from densecal.metrics.functional._options import Aggregate, CalibrationOptions, parse_options
from densecal.metrics.functional._pixels import (
    CellStatistics,
    ChunkStatistics,
    cell_statistics,
    match_shapes,
    regroup,
    validate_values,
)

__all__ = ["METRIC_KEYS", "CalibrationState", "pixel_calibration", "reliability_bins"]

METRIC_KEYS = ("ece", "mce", "oe", "ace", "brier", "nll", "accuracy")
"""Keys of the dict returned by :func:`pixel_calibration`, in this order."""


class CalibrationState(NamedTuple):
    """Sufficient statistics of the calibration metrics; every field adds (``sum`` reduce).

    Attributes:
        bin_count: ``(n_bins,)`` pixels per equal-width bin.
        bin_conf: ``(n_bins,)`` sum of confidences per bin.
        bin_acc: ``(n_bins,)`` sum of correctness (top-label) or of positives (positive mode).
        fine_count: ``(fine_bins,)`` pixels per fine bin (for equal-mass bins / ACE).
        fine_conf: ``(fine_bins,)`` sum of confidences per fine bin.
        fine_acc: ``(fine_bins,)`` sum of correctness / positives per fine bin.
        count: ``()`` number of pixels (ignored pixels excluded).
        correct: ``()`` sum of top-label correctness at ``threshold``.
        brier: ``()`` sum of (q - y)^2.
        nll: ``()`` sum of BCE(q, y).
        image_sums: ``(7,)`` sums over images of each image's metrics, in ``METRIC_KEYS``
            order (per-image aggregation only; zeros otherwise).
        image_count: ``()`` number of images with at least one pixel (per-image only).

    All tensors are float64.
    """

    bin_count: Tensor
    bin_conf: Tensor
    bin_acc: Tensor
    fine_count: Tensor
    fine_conf: Tensor
    fine_acc: Tensor
    count: Tensor
    correct: Tensor
    brier: Tensor
    nll: Tensor
    image_sums: Tensor
    image_count: Tensor

    @staticmethod
    def zeros(n_bins: int, fine_bins: int, device: torch.device | None = None) -> CalibrationState:
        """An empty state (the identity of addition)."""

        def z(*shape: int) -> Tensor:
            return torch.zeros(shape, dtype=torch.float64, device=device)

        return CalibrationState(
            z(n_bins), z(n_bins), z(n_bins), z(fine_bins), z(fine_bins), z(fine_bins),
            z(), z(), z(), z(), z(len(METRIC_KEYS)), z(),
        )  # fmt: skip


_CHUNK_PIXELS_CPU = 1 << 18  # 2 MiB of float64 per temporary; amortises per-op overhead
_CHUNK_PIXELS_CUDA = 1 << 25  # bounds GPU temporaries without many kernel launches
_CHUNK_KEYS = 1 << 22  # per-image mode: bounds rows x histogram keys (32 MiB of float64)


def _rows_per_chunk(options: CalibrationOptions, p_len: int) -> int:
    """Images per chunk in per-image mode: about a chunk of pixels, and few enough rows that
    the ``rows x keys`` histograms stay bounded (small images would otherwise pile up)."""
    n_keys = 8 * (cell_resolution(options.n_bins, options.fine_bins) + 1)
    return max(1, min(_CHUNK_KEYS // n_keys, _CHUNK_PIXELS_CPU // max(1, p_len)))


def _chunks(
    preds: Tensor, target: Tensor, per_image: bool, rows_cap: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """Split ``(N, P)`` maps into pieces of about ``_CHUNK_PIXELS_*`` pixels.

    Pooled: the pixels are flattened into one row and cut anywhere. Per-image: whole images
    (at least one, at most ``rows_cap`` per piece), since each image's histogram must be
    complete.
    """
    step = _CHUNK_PIXELS_CUDA if preds.is_cuda else _CHUNK_PIXELS_CPU
    if per_image:
        per = max(1, min(rows_cap, step // max(1, preds.shape[1])))
        yield from zip(preds.split(per), target.split(per), strict=True)
        return
    flat_p, flat_t = preds.reshape(1, -1), target.reshape(1, -1)
    yield from zip(flat_p.split(step, dim=1), flat_t.split(step, dim=1), strict=True)


def _image_metrics(part: ChunkStatistics, n_bins: int) -> tuple[Tensor, Tensor]:
    """Sum over the rows (images) of each image's metrics, and the number of non-empty images."""
    n_pix, correct, brier, nll = part.sums
    errs = uniform_bin_errors(*part.coarse)
    ace = equal_mass_ace(*part.fine, n_bins)
    per = torch.stack(
        [errs["ece"], errs["mce"], errs["oe"], ace, brier / n_pix, nll / n_pix, correct / n_pix],
        dim=-1,
    )
    present = n_pix > 0
    return torch.where(present.unsqueeze(-1), per, 0.0).sum(0), present.sum().to(torch.float64)


def _calibration_update(
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
    preds, target = match_shapes(preds, target)
    if validate:
        validate_values(preds, target, options)
    state = CalibrationState.zeros(options.n_bins, options.fine_bins, preds.device)
    per_image = options.aggregate is Aggregate.PER_IMAGE
    pooled: CellStatistics | None = None  # cell sums add up; regrouped once at the end
    for p, t in _chunks(preds, target, per_image, _rows_per_chunk(options, p_len=preds.shape[1])):
        if p.numel() == 0:
            continue
        cells = cell_statistics(p, t, options, rows=p.shape[0])
        if per_image:
            part = regroup(cells, options)
            _add_part(state, part)
            image_sums, image_count = _image_metrics(part, options.n_bins)
            state.image_sums.add_(image_sums)
            state.image_count.add_(image_count)
        else:
            pooled = cells if pooled is None else pooled + cells
    if pooled is not None:
        _add_part(state, regroup(pooled, options))
    return state


def _add_part(state: CalibrationState, part: ChunkStatistics) -> None:
    """Add a chunk's bin sums (summed over its rows) into ``state`` in place."""
    for acc, new in zip(state[:6], (*part.coarse, *part.fine), strict=True):
        acc.add_(new.sum(0))
    for acc, new in zip(state[6:10], part.sums.sum(-1), strict=True):
        acc.add_(new)


def _calibration_compute(state: CalibrationState, aggregate: Aggregate) -> dict[str, Tensor]:
    """Metrics from accumulated statistics (NaN when no pixel was seen).

    Pooled: ECE/MCE/OE from the equal-width bins, ACE from the fine histogram regrouped into
    ``n_bins`` equal-mass bins (``n_bins`` = length of ``state.bin_count``), Brier/NLL/accuracy
    as pixel means. Per-image: mean over images of each image's values.
    """
    if aggregate is Aggregate.PER_IMAGE:
        means = state.image_sums / state.image_count
        return {k: means[i] for i, k in enumerate(METRIC_KEYS)}
    n_bins = state.bin_count.shape[0]
    errs = uniform_bin_errors(state.bin_count[None], state.bin_conf[None], state.bin_acc[None])
    fine = (state.fine_count[None], state.fine_conf[None], state.fine_acc[None])
    ace = equal_mass_ace(*fine, n_bins)
    n = state.count
    return {
        "ece": errs["ece"][0],
        "mce": errs["mce"][0],
        "oe": errs["oe"][0],
        "ace": ace[0],
        "brier": state.brier / n,
        "nll": state.nll / n,
        "accuracy": state.correct / n,
    }


def _reliability_compute(state: CalibrationState) -> dict[str, Tensor]:
    """Per-bin table of the pooled equal-width bins (NaN confidence/accuracy when empty)."""
    edges = bin_edges(state.bin_count.shape[0], device=state.bin_count.device)
    count = state.bin_count
    empty = torch.full_like(count, float("nan"))
    return {
        "bin_lower": edges[:-1],
        "bin_upper": edges[1:],
        "count": count,
        "confidence": torch.where(count > 0, state.bin_conf / count, empty),
        "accuracy": torch.where(count > 0, state.bin_acc / count, empty),
    }


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
        validate_args: check values (finite, in range); costs one device-to-host sync."""


_F = TypeVar("_F", bound=Callable[..., object])


def _options_doc(func: _F) -> _F:
    """Insert the shared description of the options into ``func``'s docstring."""
    if func.__doc__:  # None under python -OO
        func.__doc__ = func.__doc__.replace("        {options}", _OPTIONS_DOC.strip("\n"))
    return func


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
    validate_args: bool = True,
) -> dict[str, Tensor]:
    """Calibration metrics of binary probability maps (ECE, MCE, OE, ACE, Brier, NLL, accuracy).

    With n_b pixels in bin b (N in all), mean confidence conf_b and accuracy acc_b:

    - ECE = sum_b (n_b/N) |conf_b - acc_b| (Guo et al. 2017; ASLP code ``ECE_EW``),
    - MCE = max over non-empty bins |conf_b - acc_b| (Guo et al. 2017),
    - OE = sum_b (n_b/N) conf_b max(conf_b - acc_b, 0) (ASLP code; Thulasidasan et al. 2019),
    - ACE = the same as ECE over ``n_bins`` equal-mass bins of the sorted confidences, weighted
      by mass (Nixon et al. 2019); computed from a fine histogram, exact for 8-bit maps and
      within ``(n_bins - 1)(1 + 1/fine_bins) max_j c_j / N`` of the exactly sorted value for
      float maps (c_j: pixels in the fullest fine bin); see ``_binning.equal_mass_ace``,
    - Brier = mean (q - y)^2 and NLL = mean BCE(q, y) with q clamped to [1e-7, 1 - 1e-7], on
      the target as given (soft targets allowed) whatever ``target_type``/``confidence``,
    - accuracy = mean top-label correctness of 1[q >= threshold] under ``target_type``.

    Differences from the ASLP code: sums are float64 (the code accumulates float32 counts,
    inexact beyond 2^24 pixels per bin) and bin means divide by n_b, not n_b + 1e-6.

    Args:
        preds: ``(N, *S)`` or ``(N, 1, *S)`` floating-point maps (probabilities or logits).
        target: same shape (the singleton channel may be absent on either side), values in
            [0, 1] (may be soft), any dtype; ``ignore_index`` pixels may hold other values.
        {options}

    Returns:
        ``{"ece", "mce", "oe", "ace", "brier", "nll", "accuracy"}``: 0-dim float64 tensors on
        ``preds.device``, fractions in [0, 1] (NaN if no pixel is left).

    Raises:
        DensecalInputError: bad option, shape mismatch, NaN/Inf values, probabilities or
            target outside [0, 1].

    Example:
        >>> q = torch.tensor([[0.9, 0.8, 0.3, 0.6]])  # confidences 0.9, 0.8, 0.7, 0.6
        >>> y = torch.tensor([[1, 0, 0, 1]])  # correct: yes, no, yes, yes
        >>> m = pixel_calibration(q, y, n_bins=4)  # bins (.5, .75]: 2 px, (.75, 1]: 2 px
        >>> {k: round(v.item(), 6) for k, v in m.items()}  # doctest: +NORMALIZE_WHITESPACE
        {'ece': 0.35, 'mce': 0.35, 'oe': 0.14875, 'ace': 0.4, 'brier': 0.225,
         'nll': 0.645575, 'accuracy': 0.75}
    """
    options = parse_options(
        n_bins=n_bins, input=input, confidence=confidence, aggregate=aggregate,
        target_type=target_type, threshold=threshold, ignore_index=ignore_index,
        fine_bins=fine_bins,
    )  # fmt: skip
    state = _calibration_update(preds, target, options, validate=validate_args)
    return _calibration_compute(state, options.aggregate)


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
    validate_args: bool = True,
) -> dict[str, Tensor]:
    """Reliability-diagram table of the pooled equal-width bins.

    The bins are always pooled over every pixel (``aggregate`` is accepted for a uniform
    signature and ignored). Bin b covers ``(bin_lower[b], bin_upper[b]]`` (0 included in bin 0).

    Args:
        preds: ``(N, *S)`` or ``(N, 1, *S)`` floating-point maps (probabilities or logits).
        target: same shape, values in [0, 1] except ``ignore_index`` pixels.
        {options}

    Returns:
        ``bin_lower``, ``bin_upper`` (edges k/n, float64 ``(n_bins,)``), ``count`` (pixels per
        bin), ``confidence`` (mean confidence) and ``accuracy`` (mean correctness, or
        frequency of y = 1 in positive mode), all float64 ``(n_bins,)``; ``confidence`` and
        ``accuracy`` are NaN for empty bins.

    Raises:
        DensecalInputError: as :func:`pixel_calibration`.

    Example:
        >>> q = torch.tensor([[0.9, 0.8, 0.3, 0.6]])
        >>> table = reliability_bins(q, torch.tensor([[1, 0, 0, 1]]), n_bins=4)
        >>> table["count"].tolist(), table["accuracy"].tolist()
        ([0.0, 0.0, 2.0, 2.0], [nan, nan, 1.0, 0.5])
    """
    options = parse_options(
        n_bins=n_bins, input=input, confidence=confidence, aggregate=aggregate,
        target_type=target_type, threshold=threshold, ignore_index=ignore_index,
        fine_bins=fine_bins,
    )  # fmt: skip
    options = dataclasses.replace(options, aggregate=Aggregate.POOLED)  # bins are pooled
    return _reliability_compute(_calibration_update(preds, target, options, validate=validate_args))
