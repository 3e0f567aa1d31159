"""Binning kernels of the pixel calibration metrics: bin indices, histograms, bin errors.

Everything here works on float64 tensors on any device and never leaves it (no ``.numpy()``,
no host synchronisation). Histograms are "rows": a ``(R, B)`` tensor holds one histogram per row
(one row per image in per-image mode, a single row when pooled), so the same kernels serve both
aggregations.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

__all__ = [
    "bin_edges",
    "bin_index",
    "cell_bins",
    "cell_histogram",
    "cell_index",
    "cell_resolution",
    "cells_to_bins",
    "cells_to_fine",
    "conf_above_edge",
    "equal_mass_ace",
    "pair_sum",
    "uniform_bin_errors",
]


def bin_edges(n_bins: int, *, device: torch.device | None = None) -> Tensor:
    """Edges ``k / n_bins`` (k = 0..n_bins) of the equal-width bins, correctly rounded float64.

    Args:
        n_bins: number of bins, >= 1.
        device: where the edges live.

    Returns:
        Tensor ``(n_bins + 1,)`` float64; ``edges[3]`` equals the float64 literal ``0.3`` when
        ``n_bins == 10`` (division, not ``linspace`` accumulation).
    """
    return torch.arange(n_bins + 1, dtype=torch.float64, device=device) / n_bins


def _above_nearest(
    q: Tensor, nearest: Tensor, n_bins: int, top_label: bool, precision: torch.dtype
) -> Tensor:
    """Whether q lies above (top-label: on the confidence side of) its nearest edge.

    ``nearest`` is ``round(q n)`` in ``q.dtype``; the edge ``nearest / n`` is one correctly
    rounded division in ``q.dtype``, which for float32 values equals the float64 edge rounded
    to float32 (checked for every n <= 20000: no double rounding), so float32 maps need no
    float64 arithmetic here. Edges are rounded to ``precision`` when it is coarser.
    """
    edge = nearest / n_bins
    if precision != q.dtype:
        edge = edge.to(torch.float64).to(precision).to(q.dtype)
    if not top_label:
        return q > edge
    return (q - edge).mul_(q - 0.5) > 0


def conf_above_edge(
    q: Tensor, n_bins: int, *, top_label: bool, precision: torch.dtype | None = None
) -> Tensor:
    """Whether each confidence lies strictly above its nearest bin edge, by the exact rule.

    With r the edge index nearest to the confidence c, the bin of c is ``r - 1 + above``
    (clamped to ``[0, n_bins - 1]``): a value equal to the edge is "not above" and goes to the
    lower bin. Edges are ``k/n`` rounded to ``precision`` (the precision of the maps), and
    compared with the values themselves, never through ``ceil(c * n)``. With ``top_label``,
    c = max(q, 1 - q) and for q < 0.5 the test is made on q itself (c above the edge
    ``1 - k/n`` iff q below the edge ``k/n``), so rounding 1 - q cannot move a value across
    an edge. Both halves in one expression: ``(q - e)(q - 1/2) > 0``; the product cannot
    underflow to zero when it matters (both factors are then at least one ulp of 1/2).

    Args:
        q: foreground probabilities in [0, 1], any shape, float32 or float64.
        n_bins: number of bins, >= 1.
        top_label: test c = max(q, 1 - q) instead of q.
        precision: dtype the maps came in (default ``q.dtype``).

    Returns:
        bool tensor of ``q``'s shape.
    """
    nearest = (q * n_bins).round_()
    precision = q.dtype if precision is None else precision
    return _above_nearest(q, nearest, n_bins, top_label, precision)


def bin_index(
    q: Tensor,
    n_bins: int,
    *,
    top_label: bool,
    precision: torch.dtype = torch.float64,
    dtype: torch.dtype = torch.int64,
) -> Tensor:
    """Index of the right-closed bin ``(k/n, (k+1)/n]`` holding each confidence, 0 in bin 0.

    The bin rule of the ASLP evaluation code (``conf > lo and conf <= hi``) made exact (see
    :func:`conf_above_edge`): for a float32 map the float32 value nearest 0.6 (the 8-bit
    level 153/255) is "on" the edge 0.6 and lands in bin 5, as in the ASLP code. With
    ``top_label`` the confidence is c = max(q, 1 - q) and, for q < 0.5, the bin is decided
    on q itself (c in (k/n, (k+1)/n] iff q in [1 - (k+1)/n, 1 - k/n)).

    The metrics do not call this per pixel: they histogram (fine cell, above-edge) pairs and
    map cells to bins afterwards (:func:`cell_bins`); this is the same rule, per value.

    Args:
        q: foreground probabilities in [0, 1], any shape, float32 or float64.
        n_bins: number of bins, >= 1.
        top_label: bin max(q, 1 - q) instead of q.
        precision: dtype of the original values; edges are rounded to it.
        dtype: integer dtype of the result.

    Returns:
        ``dtype`` tensor of ``q``'s shape with values in ``[0, n_bins - 1]``; a confidence
        equal to the edge ``k/n`` (1 <= k <= n) gets ``k - 1``; 0 gets 0.

    Example:
        >>> q = torch.tensor([0.0, 0.25, 0.3, 0.5, 1.0], dtype=torch.float64)
        >>> bin_index(q, 4, top_label=False).tolist(), bin_index(q, 4, top_label=True).tolist()
        ([0, 0, 1, 1, 3], [3, 2, 2, 1, 3])
    """
    nearest = (q * n_bins).round_()  # the edge conf_above_edge compares with, in q-space
    above = _above_nearest(q, nearest, n_bins, top_label, precision)
    if top_label:  # its index in confidence space
        nearest = torch.where(q >= 0.5, nearest, n_bins - nearest)
    return nearest.add_(above).sub_(1).clamp_(0, n_bins - 1).to(dtype)


def cell_resolution(n_bins: int, fine_bins: int) -> int:
    """Number G of uniform cells ``[j/G, (j+1)/G)`` the hot path sorts confidences into.

    G is a multiple of ``fine_bins`` (so the fine histogram is a regroup of the cells) and at
    least ``4 n_bins`` (so a cell never holds both a bin edge and a bin midpoint; see
    :func:`cell_bins`; valid for ``n_bins < 2**19``).
    """
    return fine_bins * -(-4 * n_bins // fine_bins)


def cell_index(conf: Tensor, n_cells: int) -> Tensor:
    """Cell ``floor(conf * n_cells)`` of each confidence in [0, 1], as int32.

    ``conf`` must be float64 (the product is then exact for float32 values); conf = 1 gets
    the extra cell ``n_cells``, folded into the last fine bin by :func:`cells_to_fine`.
    """
    return (conf * n_cells).to(torch.int32)  # truncation == floor for conf >= 0


@functools.lru_cache(maxsize=32)
def _cell_bins_cpu(n_bins: int, n_cells: int) -> Tensor:
    j = torch.arange(n_cells + 1, dtype=torch.float64)
    # widen each cell by more than the rounding of float32 q * n (2^-24 relative), far less
    # than a quarter bin, so pixels and table agree on the nearest edge
    slack = 2.0**-22
    lo, hi = (j / n_cells - slack) * n_bins, ((j + 1) / n_cells + slack) * n_bins
    # the bin holding a midpoint (m + 1/2)/n that lies in the cell, if any
    mid = (lo - 0.5).ceil_()
    has_mid = mid + 0.5 <= hi
    # otherwise the cell is near one edge k/n: bin k - 1 below it, k above it
    edge = ((j + 0.5) / n_cells * n_bins).round_()
    table = torch.stack([edge - 1, edge], dim=-1)
    table = torch.where(has_mid.unsqueeze(-1), mid.unsqueeze(-1), table)
    return table.clamp_(0, n_bins - 1).to(torch.int64).reshape(-1)


def cell_bins(n_bins: int, n_cells: int, device: torch.device | None = None) -> Tensor:
    """Equal-width bin of each (cell, above-edge) pair: int64 ``(2 (n_cells + 1),)``.

    Entry ``2 j + a`` is the bin of every confidence in cell j whose above-edge flag
    (:func:`conf_above_edge`) is a. Cells are narrower than a quarter bin, so a cell lies
    either near one edge k/n (bin k - 1 + a, the exact rule) or near one midpoint (the bin
    holding it, whatever a), and regrouping the cell histogram gives the exact bin sums.
    """
    return _cell_bins_cpu(n_bins, n_cells).to(device)


def cell_histogram(key: Tensor, n_keys: int, weights: Tensor | None = None) -> Tensor:
    """Sums of ``weights`` (float64; None counts) per key in ``[0, n_keys)``: float64 ``(n_keys,)``.

    One ``bincount`` pass; keys are int32/int64 of any shape.
    """
    flat = key.reshape(-1)
    if weights is None:
        return torch.bincount(flat, minlength=n_keys).to(torch.float64)
    return torch.bincount(flat, weights.reshape(-1), minlength=n_keys)


def pair_sum(x: Tensor) -> Tensor:
    """``x.sum(-1)`` for a last axis of size 2, as one addition ``x[..., 0] + x[..., 1]``.

    The same value (one rounding either way); torch's reduction over a size-2 axis of a
    histogram costs about ten times as much, which dominated updates of single images.
    """
    return x[..., 0] + x[..., 1]


def cells_to_bins(cells: Tensor, table: Tensor, n_bins: int) -> Tensor:
    """Regroup ``(R, n_cells + 1, 2)`` cell sums into ``(R, n_bins)`` bin sums (see cell_bins)."""
    out = cells.new_zeros(cells.shape[0], n_bins)
    return out.index_add_(1, table, cells.reshape(cells.shape[0], -1))


def cells_to_fine(cells: Tensor, fine_bins: int) -> Tensor:
    """Regroup ``(R, n_cells + 1)`` cell sums into ``(R, fine_bins)`` fine-bin sums.

    Cell ``n_cells`` (conf = 1) joins the last fine bin, as ``floor(conf F)`` clamped.
    """
    n_cells = cells.shape[-1] - 1
    if n_cells == fine_bins:  # one cell per fine bin (the usual case): no reduction
        fine = cells[:, :n_cells].clone()
    else:
        fine = cells[:, :n_cells].reshape(cells.shape[0], fine_bins, -1).sum(-1)
    fine[:, -1] += cells[:, n_cells]
    return fine


def uniform_bin_errors(count: Tensor, conf_sum: Tensor, acc_sum: Tensor) -> dict[str, Tensor]:
    """ECE, MCE and OE of each row of a per-bin histogram.

    With n_b pixels in bin b, conf_b = S^conf_b / n_b, acc_b = S^acc_b / n_b and N = sum_b n_b:

    - ECE = sum_b (n_b/N) |conf_b - acc_b| = sum_b |S^conf_b - S^acc_b| / N (Guo et al. 2017,
      Eq. 3; ASLP code ``ECE_EW``);
    - MCE = max over non-empty bins |conf_b - acc_b| (Guo et al. 2017, Eq. 5);
    - OE = sum_b (n_b/N) conf_b max(conf_b - acc_b, 0) (Thulasidasan et al. 2019; ASLP code).

    Args:
        count, conf_sum, acc_sum: float64 ``(R, n_bins)`` per-bin sums.

    Returns:
        ``{"ece", "mce", "oe"}``, each float64 ``(R,)``; NaN for a row with no pixel.
    """
    total = count.sum(-1)
    gap = conf_sum - acc_sum
    nonempty = count > 0
    safe = torch.where(nonempty, count, torch.ones_like(count))
    mean_conf = conf_sum / safe
    ece = gap.abs().sum(-1) / total
    oe = (mean_conf * gap.clamp(min=0)).sum(-1) / total
    mce = torch.where(nonempty, gap.abs() / safe, torch.zeros_like(gap)).amax(-1)
    mce = torch.where(total > 0, mce, torch.full_like(mce, float("nan")))
    return {"ece": ece, "mce": mce, "oe": oe}


def _cumulative(x: Tensor) -> Tensor:
    """Prefix sums with a leading zero: ``(R, F) -> (R, F + 1)``."""
    return torch.nn.functional.pad(x.cumsum(-1), (1, 0))


def equal_mass_ace(count: Tensor, conf_sum: Tensor, acc_sum: Tensor, n_bins: int) -> Tensor:
    """Adaptive calibration error (equal-mass bins) of each row of a fine histogram.

    Nixon et al. 2019 ("Measuring Calibration in Deep Learning", ACE): sort the pixels by
    confidence, cut them into ``n_bins`` groups of equal mass N/n_bins and take the
    mass-weighted ECE over those groups. With equal masses this is
    ACE = sum_g |S^conf_g - S^acc_g| / N (equal to the plain mean over groups of
    |conf_g - acc_g|; not the unweighted mean over *uniform* bins that netcal/MONAI call ACE).

    From a fine histogram (F uniform bins with count, confidence sum and accuracy sum) the
    groups are formed on the cumulative count: a group boundary at mass m = gN/n_bins that
    falls inside fine bin j takes the fraction (m - C_{j-1}) / c_j of that bin's count,
    confidence sum and accuracy sum (piecewise-linear interpolation of the prefix sums).

    Exactness: if all values in a fine bin are equal (8-bit maps k/255 with F >= 256) the
    confidence split is exact and the accuracy split is the expectation over a uniformly
    random order of the tied pixels, i.e. the exact ACE with ties split in proportion. For
    float inputs conf within a fine bin varies by at most w = 1/F, and against the ACE of the
    exactly sorted pixels the error is at most
    ``(1 + w) / N * sum_{fine bins j holding a group boundary} c_j
    <= (n_bins - 1) (1 + w) max_j c_j / N`` (the accuracy of the pixels moved across a
    boundary is the unknown part; the bound is reached only if pixels inside one fine bin are
    sorted by correctness).

    Args:
        count, conf_sum, acc_sum: float64 ``(R, F)`` fine-histogram sums.
        n_bins: number of equal-mass groups, >= 1.

    Returns:
        float64 ``(R,)``; NaN for a row with no pixel.
    """
    cum_n = _cumulative(count)
    cum_c = _cumulative(conf_sum)
    cum_a = _cumulative(acc_sum)
    total = cum_n[..., -1:]
    fractions = torch.arange(n_bins + 1, dtype=torch.float64, device=count.device) / n_bins
    marks = total * fractions  # (R, n_bins + 1); the last mark is exactly N
    hi = torch.searchsorted(cum_n, marks, right=False).clamp_(1, cum_n.shape[-1] - 1)
    lo = hi - 1
    n_lo, n_hi = cum_n.gather(-1, lo), cum_n.gather(-1, hi)
    width = n_hi - n_lo
    frac = torch.where(width > 0, (marks - n_lo) / torch.where(width > 0, width, 1.0), 0.0)

    def at_marks(cum: Tensor) -> Tensor:
        c_lo = cum.gather(-1, lo)
        return c_lo + frac * (cum.gather(-1, hi) - c_lo)

    gap = at_marks(cum_c).diff(dim=-1) - at_marks(cum_a).diff(dim=-1)
    return gap.abs().sum(-1) / total.squeeze(-1)
