"""Per-pixel kernel of the multi-class and multi-label calibration metrics (C-channel maps).

A chunk is a ``(R, C, L)`` block of maps (R images, C classes, L pixels of each image) and its
target: a class-index map ``(R, L)`` or a probability map ``(R, C, L)``. The functions here turn
a chunk into sufficient sums, for one row (pooled) or one row per image (per-image):

- top-label (multi-class): confidence c = max_k p_k, prediction argmax_k p_k; one key per pixel
  (uniform cell of c, above its nearest bin edge, and for hard targets whether the prediction
  is right) exactly as the binary kernel of ``_pixels`` (one ``bincount`` for the counts and the
  accuracy, one weighted by c), so the equal-width bins and the fine histogram of ACE come from
  the same cell sums (``binary_kernel.regroup``);
- class-wise: every (pixel, class k) element is a positive-mode pair (p_k, 1[y = k]) (soft:
  y_k). Its key is ``(k n_bins + bin(p_k)) 2 + 1[y = k]``: one ``bincount`` over all C L elements
  fills the ``(C, n_bins)`` count and accuracy cells of every class, one more weighted by p_k the
  confidence cells (no loop over classes);
- Brier and NLL sums.

Pixels that take no part (``ignore_index``; background pixels when the top-label metrics are
foreground-only) get the extra key ``n_keys``, a dump cell dropped after the count.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch
from torch import Tensor

from densecal.errors import input_error
from densecal.metrics.functional._calibration.binary_kernel import (
    NLL_EPS,
    CellStatistics,
    cell_statistics,
    positive_frequency,
    sum_neg_log,
)
from densecal.metrics.functional._calibration.binning import (
    bin_index,
    cell_histogram,
    cell_index,
    cell_resolution,
    conf_above_edge,
    pair_sum,
    uniform_bin_errors,
)
from densecal.metrics.functional._calibration.options import (
    CalibrationOptions,
    InputKind,
    TargetType,
    Task,
)

__all__ = [
    "ClassSums",
    "class_errors",
    "class_histograms",
    "class_probabilities",
    "match_class_shapes",
    "multiclass_statistics",
    "multilabel_statistics",
    "sum_tolerance",
    "validate_class_values",
]


class ClassSums(NamedTuple):
    """Per-row, per-class equal-width bin sums (float64 ``(R, C, n_bins)`` each).

    Attributes:
        count: elements (pixel, class k) per bin of p_k.
        conf_sum: sum of p_k per bin.
        acc_sum: sum of 1[y = k] (soft: y_k; strict: 1[y_k == 1]) per bin.
    """

    count: Tensor
    conf_sum: Tensor
    acc_sum: Tensor

    def __add__(self, other: object) -> ClassSums:
        if not isinstance(other, ClassSums):
            return NotImplemented
        return ClassSums(*(a + b for a, b in zip(self, other, strict=True)))


def sum_tolerance(dtype: torch.dtype, num_classes: int) -> float:
    """Largest accepted ``|sum_k p_k - 1|`` for probabilities of ``dtype``.

    ``max(1e-3, C eps)``: far above the rounding of a float32 or float64 softmax, and of a
    half/bfloat16 one (up to about C / 2 ulps), far below a map that is not a distribution.
    """
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    return max(1e-3, num_classes * eps)


def match_class_shapes(
    preds: Tensor, target: Tensor, options: CalibrationOptions
) -> tuple[Tensor, Tensor]:
    """Check a C-channel pair and bring it to ``(N, C, P)`` and ``(N, P)`` / ``(N, C, P)``.

    Multi-class targets are class-index maps ``(N, *S)`` (or ``(N, 1, *S)``) of an integer
    dtype, or probability maps ``(N, C, *S)`` (any dtype); multi-label targets are ``(N, C, *S)``.

    Raises:
        DensecalInputError: preds not floating point, devices differ, channel dim !=
            ``num_classes``, target shape or dtype not one of the above.
    """
    if not torch.is_tensor(preds) or not preds.is_floating_point():
        got = preds.dtype if torch.is_tensor(preds) else type(preds).__name__
        raise input_error("preds", f"expected a floating-point tensor, got {got}")
    if not torch.is_tensor(target):
        raise input_error("target", f"expected a tensor, got {type(target).__name__}")
    if target.device != preds.device:
        raise input_error("target", f"on device {target.device} but preds on {preds.device}")
    c = options.num_classes
    if preds.ndim < 2:
        raise input_error("preds", f"expected shape (N, C, *spatial), got {tuple(preds.shape)}")
    if preds.shape[1] != c:
        raise input_error(
            "preds", f"channel dim has {preds.shape[1]} channels but num_classes={c}"
        )
    n, spatial = preds.shape[0], preds.shape[2:]
    flat = preds.reshape(n, c, -1)
    if target.shape == preds.shape:
        return flat, target.reshape(n, c, -1)
    multiclass = options.task is Task.MULTICLASS
    if multiclass and target.shape in ((n, *spatial), (n, 1, *spatial)):
        if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
            raise input_error(
                "target",
                f"a class-index map needs an integer dtype, got {target.dtype} "
                "(a probability map has the shape of preds)",
            )
        return flat, target.reshape(n, -1)
    want = "(N, *spatial) class indices or (N, C, *spatial)" if multiclass else "(N, C, *spatial)"
    raise input_error(
        "target",
        f"shape {tuple(target.shape)} does not match preds shape {tuple(preds.shape)}; "
        f"expected {want}",
    )


def _ignored(y: Tensor, options: CalibrationOptions) -> Tensor | None:
    """Where a target is void: index maps and multi-label maps element-wise, multi-class
    probability maps where every channel of the pixel equals ``ignore_index``."""
    if options.ignore_index is None:
        return None
    void = y == options.ignore_index
    if y.ndim == 3 and options.task is Task.MULTICLASS:
        void = void.all(1)
    return void


def validate_class_values(preds: Tensor, target: Tensor, options: CalibrationOptions) -> None:
    """Check finiteness, ranges, class indices and channel sums with one host transfer.

    Args:
        preds: ``(N, C, P)``; target: ``(N, P)`` class indices or ``(N, C, P)`` maps.
        options: parsed options (multi-class or multi-label).

    Raises:
        DensecalInputError: NaN/Inf; probabilities outside [0, 1] or (multi-class) not summing
            to 1 over C within :func:`sum_tolerance` (hint: ``input='logits'``); a negative
            class index or one >= ``num_classes`` (``ignore_index`` excluded); a target map
            outside [0, 1] or (multi-class) not summing to 1 over C.
    """
    if preds.numel() == 0:
        return
    c = options.num_classes
    multiclass = options.task is Task.MULTICLASS
    stats = [*torch.aminmax(preds)]
    check_sum = multiclass and options.input is InputKind.PROBS
    if check_sum:
        stats.append((preds.sum(1) - 1.0).abs_().amax())  # rounding << the tolerance
    void = _ignored(target, options)
    t = target.to(torch.uint8) if target.dtype == torch.bool else target
    if void is not None:
        keep = ~void if t.ndim == 2 or not multiclass else ~void[:, None]
        t = torch.where(keep, t, 0)
    stats += torch.aminmax(t)
    map_sum = multiclass and t.ndim == 3
    if map_sum:
        dev = (t.sum(1, dtype=torch.float64) - 1.0).abs_()
        stats.append((dev if void is None else dev.where(~void, 0.0)).amax())
    values = torch.stack([s.double() for s in stats]).tolist()
    p_min, p_max = values[0], values[1]
    if not (math.isfinite(p_min) and math.isfinite(p_max)):
        raise input_error("preds", "contains NaN or Inf values")
    if options.input is InputKind.PROBS and (p_min < 0.0 or p_max > 1.0):
        raise input_error(
            "preds",
            f"values outside [0, 1] (min {p_min:.4g}, max {p_max:.4g}); "
            "pass input='logits' for raw scores",
        )
    rest = values[2:]
    if check_sum:
        dev = rest.pop(0)
        if dev > sum_tolerance(preds.dtype, c):
            raise input_error(
                "preds",
                f"probabilities do not sum to 1 over the {c} channels (max |sum - 1| "
                f"{dev:.3g}); pass input='logits' for raw scores",
            )
    t_min, t_max = rest[0], rest[1]
    hint = "" if options.ignore_index is not None else "; pass ignore_index for void pixels"
    if t.ndim == 2:  # class indices
        if t_min < 0:
            raise input_error("target", f"negative class index {t_min:g}{hint}")
        if t_max >= c:
            raise input_error("target", f"class index {t_max:g} >= num_classes={c}{hint}")
        return
    if not (math.isfinite(t_min) and math.isfinite(t_max)):
        raise input_error("target", "contains NaN or Inf values")
    if t_min < 0.0 or t_max > 1.0:
        raise input_error(
            "target",
            f"values outside [0, 1] (min {t_min:.4g}, max {t_max:.4g}, ignore_index "
            f"excluded){hint}",
        )
    if map_sum and rest[2] > sum_tolerance(target.dtype, c):
        raise input_error(
            "target",
            f"class probabilities do not sum to 1 over the {c} channels (max |sum - 1| "
            f"{rest[2]:.3g}); pass class indices (N, *spatial) or a one-hot / soft map",
        )


def class_probabilities(preds: Tensor, options: CalibrationOptions) -> tuple[Tensor, torch.dtype]:
    """Probabilities ``(R, C, L)`` and the precision the bin edges are rounded to.

    Logits: softmax over C (multi-class) or sigmoid (multi-label) in float64. Probabilities keep
    float32 / float64 (half and bfloat16 are widened to float32, exactly).
    """
    if options.input is InputKind.LOGITS:
        x = preds.to(torch.float64)
        p = torch.softmax(x, 1) if options.task is Task.MULTICLASS else torch.sigmoid(x)
        return p, torch.float64
    if preds.dtype in (torch.float32, torch.float64):
        return preds, preds.dtype
    return preds.to(torch.float32), preds.dtype


def _masked_histogram(
    key: Tensor, n_keys: int, keep: Tensor | None, weights: Tensor | None = None
) -> Tensor:
    """``cell_histogram`` where the keys of elements with ``keep`` False are dropped.

    ``key`` must already hold the dump key ``n_keys`` there (see :func:`_dump`).
    """
    if keep is None:
        return cell_histogram(key, n_keys, weights)
    return cell_histogram(key, n_keys + 1, weights)[:n_keys]


def _dump(key: Tensor, n_keys: int, keep: Tensor | None) -> Tensor:
    """Send the keys of elements outside ``keep`` (broadcastable) to the dump key ``n_keys``."""
    if keep is None:
        return key
    return torch.where(keep, key, n_keys)


def _keys(key: Tensor, width: int, pooled: bool) -> tuple[Tensor, int, int]:
    """Keys of row r offset by ``r * width`` (none when pooled): keys, their total, output rows.

    Works on keys of any shape ``(R, ...)``, so masks broadcast against them unchanged.
    """
    if pooled:
        return key, width, 1
    rows = key.shape[0]
    if rows > 1:
        step = torch.arange(0, rows * width, width, device=key.device, dtype=key.dtype)
        key = key + step.view(rows, *([1] * (key.ndim - 1)))
    return key, rows * width, rows


def class_histograms(
    p: Tensor,
    precision: torch.dtype,
    n_bins: int,
    *,
    p64: Tensor | None = None,
    label: Tensor | None = None,
    freq: Tensor | None = None,
    keep: Tensor | None = None,
    pooled: bool,
) -> ClassSums:
    """Positive-mode bin sums of every class: p_k against its label, in one pass.

    Args:
        p: ``(R, C, L)`` probabilities (float32 or float64).
        precision: dtype the bin edges are rounded to (``binning.bin_index``).
        n_bins: equal-width bins ``(k/n, (k+1)/n]``.
        p64: ``p`` as float64 if the caller has it (saves a conversion).
        label: ``(R, C, L)`` bool, y = k (hard targets); or
        freq: ``(R, C, L)`` float64 frequency of class k (soft / strict targets).
        keep: bool, broadcastable to ``(R, C, L)``; elements left out where False.
        pooled: one output row instead of R.

    Returns:
        :class:`ClassSums` with ``(1 or R, C, n_bins)`` tensors.
    """
    c = p.shape[1]
    key = bin_index(p, n_bins, top_label=False, precision=precision, dtype=torch.int32)
    key += torch.arange(0, c * n_bins, n_bins, device=p.device, dtype=torch.int32)[:, None]
    width = c * n_bins
    if label is not None:
        key = key.mul_(2).add_(label)
        width *= 2
    key, total, out_rows = _keys(key, width, pooled)
    key = _dump(key, total, keep)
    shape = (out_rows, c, n_bins)
    conf_sum = _masked_histogram(key, total, keep, p.to(torch.float64) if p64 is None else p64)
    if label is not None:
        count = _masked_histogram(key, total, keep).view(*shape, 2)
        return ClassSums(pair_sum(count), pair_sum(conf_sum.view(*shape, 2)), count[..., 1])
    if freq is None:
        raise ValueError("class_histograms needs label or freq")
    count = _masked_histogram(key, total, keep).view(shape)
    acc_sum = _masked_histogram(key, total, keep, freq).view(shape)
    return ClassSums(count, conf_sum.view(shape), acc_sum)


def _multiclass_targets(
    target: Tensor, options: CalibrationOptions
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """``(index, ymap, valid)`` of a multi-class chunk's target.

    ``index``: ``(R, L)`` int64 class of each pixel for hard correctness (the map itself, or the
    argmax of a probability map with ``target_type="hard"``), else None. ``ymap``: the
    probability map ``(R, C, L)`` float64 (void pixels zeroed), None for index maps. ``valid``:
    ``(R, L)`` bool, None without ``ignore_index``.
    """
    void = _ignored(target, options)
    valid = None if void is None else ~void
    if target.ndim == 2:
        return target.to(torch.int64), None, valid
    y = target.to(torch.float64)
    if valid is not None:
        y = torch.where(valid[:, None], y, 0.0)
    index = y.argmax(1) if options.target_type is TargetType.HARD else None
    return index, y, valid


def _and(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None:
        return b
    return a if b is None else a & b


def multiclass_statistics(
    preds: Tensor, target: Tensor, options: CalibrationOptions, *, pooled: bool
) -> tuple[CellStatistics, ClassSums]:
    """Top-label cell sums and class-wise bin sums of a multi-class chunk.

    Args:
        preds: ``(R, C, L)`` probabilities or logits (original dtype).
        target: ``(R, L)`` class indices or ``(R, C, L)`` probability map.
        options: parsed options (``task="multiclass"``).
        pooled: one output row instead of R.

    Returns:
        ``(CellStatistics, ClassSums)``; the cell statistics' ``sums`` are the top-label
        correct count, the Brier sum ``sum_k (p_k - y_k)^2`` and the NLL sum ``-sum_k y_k log
        max(p_k, 1e-7)`` over the pixels kept for the top-label metrics.
    """
    rows, c, _ = preds.shape
    p, precision = class_probabilities(preds, options)
    p64 = p.to(torch.float64)
    index, ymap, valid = _multiclass_targets(target, options)
    keep = valid  # pixels of the top-label metrics
    if not options.include_background:
        keep = _and(keep, (index if index is not None else ymap.argmax(1)) != 0)

    # top-label: one key per pixel (cell of c, above its edge[, prediction right])
    conf, pred = p.max(1)
    conf64 = conf.to(torch.float64)
    n_cells = cell_resolution(options.n_bins, options.fine_bins)
    key = cell_index(conf64, n_cells).mul_(2)
    key += conf_above_edge(conf, options.n_bins, top_label=False, precision=precision)
    out_rows = 1 if pooled else rows
    if index is not None:
        key = key.mul_(2).add_(pred == index)
        key, total, _ = _keys(key, 4 * (n_cells + 1), pooled)
        key = _dump(key, total, keep)
        shape = (out_rows, n_cells + 1, 2, 2)
        count = _masked_histogram(key, total, keep).view(shape)
        conf_sum = _masked_histogram(key, total, keep, conf64).view(shape)
        cells = (pair_sum(count), pair_sum(conf_sum), count[..., 1])
    else:
        assert ymap is not None
        right = ymap.gather(1, pred[:, None]).squeeze(1)  # expected accuracy y_pred
        if options.target_type is TargetType.STRICT:
            right = (right == 1.0).to(torch.float64)
        key, total, _ = _keys(key, 2 * (n_cells + 1), pooled)
        key = _dump(key, total, keep)
        shape = (out_rows, n_cells + 1, 2)
        weights = (None, conf64, right)
        cells = tuple(_masked_histogram(key, total, keep, w).view(shape) for w in weights)
    correct = cells[2].sum((1, 2))

    # Brier and NLL over the kept pixels, on the target as given
    if ymap is None:
        assert index is not None
        t = index.clamp(0, c - 1) if valid is not None else index
        p_true = p64.gather(1, t[:, None]).squeeze(1)
        brier = torch.linalg.vecdot(p64, p64, dim=1).sub_(p_true, alpha=2.0).add_(1.0)
        picked = p_true.clamp(min=NLL_EPS)
        if keep is not None:
            brier, picked = brier.where(keep, 0.0), picked.where(keep, 1.0)
        nll = sum_neg_log(picked.reshape(out_rows, -1))
    else:
        brier = (p64 - ymap).square_().sum(1)
        nll_px = (p64.clamp(min=NLL_EPS).log_() * ymap).sum(1).neg_()
        if keep is not None:
            brier, nll_px = brier.where(keep, 0.0), nll_px.where(keep, 0.0)
        nll = nll_px.reshape(out_rows, -1).sum(-1)
    brier = brier.reshape(out_rows, -1).sum(-1)
    top = CellStatistics(cells, torch.stack([correct, brier, nll]))

    # class-wise: (p_k, y = k) for every class, over every valid pixel
    cells_keep = None if valid is None else valid[:, None]
    if index is not None:
        label = index[:, None] == torch.arange(c, device=index.device)[:, None]
        classes = class_histograms(
            p, precision, options.n_bins, p64=p64, label=label, keep=cells_keep, pooled=pooled
        )
    else:
        assert ymap is not None
        freq = positive_frequency(ymap, options.target_type)
        classes = class_histograms(
            p, precision, options.n_bins, p64=p64, freq=freq, keep=cells_keep, pooled=pooled
        )
    return top, classes


def multilabel_statistics(
    preds: Tensor, target: Tensor, options: CalibrationOptions, *, pooled: bool
) -> tuple[CellStatistics, ClassSums]:
    """Top-label cell sums and class-wise bin sums of a multi-label chunk.

    The top-label sums are the binary kernel's (``binary_kernel.cell_statistics``) on the (pixel,
    class) elements of classes ``0..C-1`` (``1..C-1`` without the background): confidence
    max(q, 1 - q), prediction q >= threshold, per-element Brier and BCE.

    Args:
        preds: ``(R, C, L)`` probabilities or logits; target: ``(R, C, L)`` in [0, 1] except
            ``ignore_index`` (element-wise void).
        options: parsed options (``task="multilabel"``).
        pooled: one output row instead of R.
    """
    rows = preds.shape[0]
    first = 0 if options.include_background else 1
    out_rows = 1 if pooled else rows
    binary = dataclasses.replace(
        options, task=Task.BINARY, num_classes=None, include_background=True
    )
    top = cell_statistics(
        preds[:, first:].reshape(out_rows, -1), target[:, first:].reshape(out_rows, -1),
        binary, out_rows,
    )  # fmt: skip
    p, precision = class_probabilities(preds, options)
    void = _ignored(target, options)
    keep = None if void is None else ~void
    if options.target_type is TargetType.HARD:
        label = target if target.dtype == torch.bool else target >= 0.5
        classes = class_histograms(
            p, precision, options.n_bins, label=label, keep=keep, pooled=pooled
        )
        return top, classes
    y = target.to(torch.float64)
    if keep is not None:
        y = torch.where(keep, y, 0.0)
    freq = positive_frequency(y, options.target_type)
    classes = class_histograms(p, precision, options.n_bins, freq=freq, keep=keep, pooled=pooled)
    return top, classes


def class_errors(sums: ClassSums, include_background: bool) -> tuple[Tensor, Tensor]:
    """Class-wise ECE ``(R, C)`` and marginal ECE ``(R,)`` of per-row class sums.

    The ECE of class k is the positive-mode ECE of its row (Kull et al. 2019's class-wise ECE;
    NaN where the class has no element). The marginal ECE is the ECE of ONE histogram: the
    bin sums of the included classes added up (every (pixel, class) pair pooled).
    """
    rows, c, n_bins = sums.count.shape
    per_class = uniform_bin_errors(*(x.reshape(rows * c, n_bins) for x in sums))["ece"]
    first = 0 if include_background else 1
    marginal = uniform_bin_errors(*(x[:, first:].sum(1) for x in sums))["ece"]
    return per_class.view(rows, c), marginal
