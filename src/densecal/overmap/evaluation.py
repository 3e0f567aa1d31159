"""How well a confidence score separates right from wrong predictions, and audit precision.

All inputs are 1-D arrays of one value per image; computations are float64 numpy.

- :func:`accuracy_by_bin`: accuracy per equal-width score bin on [0, 1], right-closed
  ``(lo, hi]`` with 0 in the first bin (densecal's binning rule, docs/methods.md section 7).
- :func:`misclassification_auroc`: AUROC of detecting errors by low confidence, i.e. the
  Mann-Whitney probability that a correct prediction has a higher confidence than a wrong one,
  ties counting one half (Hendrycks & Gimpel, ICLR 2017, the misclassification-detection
  baseline).
- :func:`risk_coverage` / :func:`aurc`: selective risk (error rate of the ``k`` most confident
  predictions) against coverage ``k / N``, and its area ``AURC = (1/N) sum_k risk(k/N)``
  (Geifman, Uziel & El-Yaniv, ICLR 2019). Tied confidences cannot be separated by a threshold,
  so every coverage inside a tie group gets the risk of the whole group's prefix.
- :func:`combine_confidence`: densecal's combination of Over-MAP and max-softmax, the product
  ``OM * MSP`` (a prediction is trusted when the classifier is sure AND looks at the object;
  parameter-free, so no validation split is needed).
- :func:`audit_order`: lowest score first, ties by a secondary key (the max-softmax).
- :func:`precision_at_k`: fraction of flagged items among the ``k`` lowest-scoring ones.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from densecal.errors import input_error

__all__ = [
    "accuracy_by_bin",
    "audit_order",
    "aurc",
    "combine_confidence",
    "misclassification_auroc",
    "precision_at_k",
    "risk_coverage",
]


def _pair(scores: ArrayLike, flags: ArrayLike, what: str) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    f = np.asarray(flags).ravel().astype(bool)
    if s.shape != f.shape:
        raise input_error(what, f"{s.size} scores but {f.size} flags")
    if not np.isfinite(s).all():
        raise input_error(what, "scores must be finite")
    return s, f


def accuracy_by_bin(scores: ArrayLike, correct: ArrayLike, n_bins: int = 10
                    ) -> list[tuple[float, int, float | None]]:
    """``[(bin lower edge, count, accuracy), ...]`` over ``n_bins`` equal bins of [0, 1].

    Bins are ``(lo, hi]`` except the first, ``[0, hi]``; accuracy is None for an empty bin.

    Example:
        >>> accuracy_by_bin([0.0, 0.5, 0.75, 1.0], [0, 1, 0, 1], n_bins=2)
        [(0.0, 2, 0.5), (0.5, 2, 0.5)]
    """
    s, c = _pair(scores, correct, "scores")
    if n_bins < 1:
        raise input_error("n_bins", f"must be >= 1, got {n_bins}")
    if ((s < 0) | (s > 1)).any():
        raise input_error("scores", "must lie in [0, 1] to be binned")
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins  # k / n, as the literals
    index = np.clip(np.searchsorted(edges, s, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    hits = np.bincount(index, weights=c.astype(np.float64), minlength=n_bins)
    return [(b / n_bins, int(count[b]), float(hits[b] / count[b]) if count[b] else None)
            for b in range(n_bins)]


def misclassification_auroc(confidence: ArrayLike, correct: ArrayLike) -> float:
    """AUROC of misclassification detection: ``P(conf_correct > conf_wrong) + P(tie) / 2``.

    Returns NaN when all predictions are right or all are wrong (the AUROC is undefined).

    Example:
        >>> misclassification_auroc([0.9, 0.8, 0.8, 0.1], [1, 1, 0, 0])
        0.875
    """
    s, c = _pair(confidence, correct, "confidence")
    n_pos, n_neg = int(c.sum()), int((~c).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="stable")
    ranks = np.empty(s.size, np.float64)
    sorted_s = s[order]
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], s.size]
    for lo, hi in zip(starts, ends, strict=True):  # average ranks of ties (1-based)
        ranks[order[lo:hi]] = (lo + hi + 1) / 2.0
    u = ranks[c].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def risk_coverage(confidence: ArrayLike, correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Coverage ``k / N`` and selective risk for ``k = 1..N``, most confident first.

    Returns:
        ``(coverage, risk)``, each ``(N,)`` float64; ties share the risk at their group's end.

    Raises:
        DensecalInputError: empty input or mismatched lengths.
    """
    s, c = _pair(confidence, correct, "confidence")
    if s.size == 0:
        raise input_error("confidence", "no predictions")
    order = np.argsort(-s, kind="stable")
    sorted_s = s[order]
    errors = np.cumsum(~c[order]).astype(np.float64)
    k = np.arange(1, s.size + 1, dtype=np.float64)
    group_end = np.r_[np.flatnonzero(sorted_s[1:] != sorted_s[:-1]), s.size - 1]
    last = np.searchsorted(group_end, np.arange(s.size))  # tie group of each position
    risk = errors[group_end[last]] / k[group_end[last]]
    return k / s.size, risk


def aurc(confidence: ArrayLike, correct: ArrayLike) -> float:
    """Area under the risk-coverage curve, ``(1/N) sum_k risk(k/N)`` (lower is better).

    Example:
        >>> aurc([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])  # risks 0, 1/2, 1/3, 1/2
        0.3333333333333333
    """
    return float(risk_coverage(confidence, correct)[1].mean())


def combine_confidence(overmap: ArrayLike, msp: ArrayLike) -> np.ndarray:
    """densecal's combined confidence ``OM * MSP`` (both in [0, 1]), float64."""
    om, _ = _pair(overmap, np.zeros(np.size(overmap)), "overmap")
    p = np.asarray(msp, dtype=np.float64).ravel()
    if p.shape != om.shape:
        raise input_error("msp", f"{p.size} values for {om.size} overlap scores")
    return om * p


def audit_order(scores: ArrayLike, secondary: ArrayLike | None = None) -> np.ndarray:
    """Indices from the lowest score up; ties broken by ``secondary`` (lowest first), then by
    position. The audit passes the max-softmax as ``secondary``: among images with the same
    overlap (e.g. every all-zero Grad-CAM, overlap 0) the least confident comes first, not
    the first file.

    Example:
        >>> audit_order([0.0, 0.5, 0.0], [0.9, 0.1, 0.4]).tolist()
        [2, 0, 1]
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    if secondary is None:
        return np.argsort(s, kind="stable")
    t = np.asarray(secondary, dtype=np.float64).ravel()
    if t.shape != s.shape:
        raise input_error("secondary", f"{t.size} values for {s.size} scores")
    return np.lexsort((np.arange(s.size), t, s))


def precision_at_k(scores: ArrayLike, flagged: ArrayLike, k: int,
                   secondary: ArrayLike | None = None) -> float:
    """Fraction of ``flagged`` items among the ``k`` lowest ``scores`` (ties: the lowest
    ``secondary`` first, then position; :func:`audit_order`).

    Example:
        >>> precision_at_k([0.1, 0.9, 0.2, 0.3], [1, 0, 0, 1], k=2)
        0.5
        >>> precision_at_k([0.0, 0.0, 0.5], [0, 1, 0], k=1, secondary=[0.9, 0.3, 0.1])
        1.0
    """
    s, f = _pair(scores, flagged, "scores")
    if not 1 <= k <= s.size:
        raise input_error("k", f"must be in 1..{s.size}, got {k}")
    return float(f[audit_order(s, secondary)[:k]].mean())
