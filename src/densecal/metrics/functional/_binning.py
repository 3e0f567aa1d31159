"""Binning kernels of the pixel calibration metrics: bin indices, histograms, bin errors.

Everything here works on float64 tensors on any device and never leaves it (no ``.numpy()``,
no host synchronisation). Histograms are "rows": a ``(R, B)`` tensor holds one histogram per row
(one row per image in per-image mode, a single row when pooled), so the same kernels serve both
aggregations.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "bin_edges",
    "bin_index",
    "equal_mass_ace",
    "fine_index",
    "row_histogram",
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


def bin_index(
    q: Tensor, n_bins: int, *, top_label: bool, precision: torch.dtype = torch.float64
) -> Tensor:
    """Index of the right-closed bin ``(k/n, (k+1)/n]`` holding each confidence, 0 in bin 0.

    The bin rule of the ASLP evaluation code (``conf > lo and conf <= hi``) made exact: values
    are compared with the edge values themselves (``torch.bucketize``), never through
    ``ceil(conf * n)`` (the float32 0.3 times 10 is 3.0000001 in float64). Edges are k/n
    rounded to ``precision``, the precision the maps came in: for a float32 map the float32
    value nearest 0.6 (the 8-bit level 153/255) is "on" the edge 0.6 and lands in bin 5, as in
    the ASLP code. With ``top_label`` the confidence is c = max(q, 1 - q) and, for q < 0.5, the
    bin is decided on q itself (c in (k/n, (k+1)/n] iff q in [1 - (k+1)/n, 1 - k/n)), so the
    rounding of 1 - q cannot move a value across an edge.

    Args:
        q: foreground probabilities in [0, 1], any shape, float64.
        n_bins: number of bins, >= 1.
        top_label: bin max(q, 1 - q) instead of q.
        precision: dtype of the original values; edges are rounded to it and back to float64.

    Returns:
        int64 tensor of ``q``'s shape with values in ``[0, n_bins - 1]``; a confidence equal to
        the edge ``k/n`` (1 <= k <= n) gets ``k - 1``; 0 gets 0.

    Example:
        >>> q = torch.tensor([0.0, 0.25, 0.3, 0.5, 1.0], dtype=torch.float64)
        >>> bin_index(q, 4, top_label=False).tolist(), bin_index(q, 4, top_label=True).tolist()
        ([0, 0, 1, 1, 3], [3, 2, 2, 1, 3])
    """
    inner = bin_edges(n_bins, device=q.device)[1:-1].to(precision).to(torch.float64)
    if not top_label:
        return torch.bucketize(q, inner, right=False)
    # one search for both halves: -q against the mirrored edges, q against the edges
    upper = q >= 0.5
    index = torch.bucketize(torch.where(upper, q, -q), torch.cat([-inner.flip(0), inner]))
    return index - upper.to(torch.int64) * (n_bins - 1)


def fine_index(conf: Tensor, fine_bins: int) -> Tensor:
    """Index ``floor(conf * fine_bins)`` (clamped to ``fine_bins - 1``) of the fine histogram.

    Only the order of fine bins matters (they are regrouped into equal-mass bins), so the
    half-open rule [j/F, (j+1)/F) is used; 8-bit levels k/255 never share a fine bin when
    ``fine_bins >= 256``.
    """
    return (conf * fine_bins).floor_().clamp_(0, fine_bins - 1).to(torch.int64)


def row_histogram(
    index: Tensor,
    n_cols: int,
    weights: tuple[Tensor | None, ...],
) -> tuple[Tensor, ...]:
    """Per-row sums of several weight tensors over column indices.

    Counts use ``torch.bincount``; weighted sums use float64 ``scatter_add_`` (much faster than
    a weighted ``bincount`` on CPU).

    Args:
        index: int64 ``(R, P)`` column index in ``[0, n_cols)`` of each of P pixels in R rows.
        n_cols: number of columns (bins).
        weights: float64 tensors ``(R, P)``; ``None`` counts pixels (weight 1).

    Returns:
        One float64 ``(R, n_cols)`` tensor per entry of ``weights``.
    """
    rows = index.shape[0]
    key = index
    if rows > 1:
        key = index + torch.arange(rows, device=index.device).unsqueeze(1) * n_cols
    key = key.reshape(-1)
    out = []
    for w in weights:
        if w is None:
            h = torch.bincount(key, minlength=rows * n_cols).to(torch.float64)
        else:
            h = torch.zeros(rows * n_cols, dtype=torch.float64, device=key.device)
            h.scatter_add_(0, key, w.reshape(-1))
        out.append(h.view(rows, n_cols))
    return tuple(out)


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
