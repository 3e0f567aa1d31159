"""Failure detection from the confidence histogram: AURC, E-AURC, AUROC and FPR at 95 % TPR.

How well does the top-label confidence separate correct pixels from misclassified ones? The
calibration state already holds, per fine confidence cell, the number of pixels and of correct
ones; these four quantities follow from those counts exactly, over every pixel, in constant
memory (TorchUncertainty computes them for segmentation on a 1 % pixel sample).

Cells are the ties: pixels of one cell are treated as having one confidence. For 8-bit maps each
level falls in a cell of its own, so the results are exact; for float maps the cell width is the
only approximation, and :func:`failure_detection` also returns the largest error it can cause.

Definitions (``N`` pixels, ``E`` misclassified, ``C = N - E`` correct; ``docs/methods.md`` §7):

* **AURC** (Geifman et al., ICLR 2019): the mean over coverages ``i = 1..N`` of the selective
  risk (errors among the ``i`` most confident pixels, divided by ``i``). Within a tie the order
  is undefined; densecal takes the expectation over tie orders, ``(a + i·e/n) / (m + i)`` for the
  ``i``-th pixel of a cell of ``n`` pixels and ``e`` errors after ``m`` pixels holding ``a`` errors,
  summed in closed form with harmonic numbers.
* **E-AURC**: AURC minus the AURC of an oracle ranking every error last,
  ``(E − C·(H_N − H_C)) / N`` (the discrete optimum, not Geifman's continuous approximation).
* **AUROC** of confidence for detecting misclassified pixels (errors are positives, lower
  confidence scores higher): the probability that an error has lower confidence than a correct
  pixel, ties counting one half, which is sklearn's ``roc_auc_score(is_error, -confidence)``.
* **FPR95**: the share of correct pixels flagged at the lowest confidence threshold that flags
  at least 95 % of the errors (``fpr[tpr >= 0.95][0]`` of sklearn's ``roc_curve`` with
  ``drop_intermediate=False``).

Each is NaN when it is undefined (no pixel, no error, or, for AUROC and FPR95, no correct pixel).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import digamma

__all__ = ["FAILURE_KEYS", "failure_detection", "risk_coverage"]

FAILURE_KEYS = ("aurc", "eaurc", "auroc", "fpr95")
"""Keys of the failure-detection metrics, in report order."""


def _harmonic_gap(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``H(hi) - H(lo) = sum_{k=lo+1}^{hi} 1/k`` for integer-valued float arrays."""
    return digamma(hi + 1.0) - digamma(lo + 1.0)


def failure_detection(count: np.ndarray, correct: np.ndarray) -> dict[str, float]:
    """AURC, E-AURC, AUROC and FPR95 from per-cell counts, with their bounds from the cells.

    Args:
        count: ``(K,)`` pixels per confidence cell, cells in ascending confidence.
        correct: ``(K,)`` correctly classified pixels per cell (``0 <= correct <= count``).

    Returns:
        ``{"aurc", "eaurc", "auroc", "fpr95"}`` (fractions, NaN when undefined) and
        ``{"aurc_bound", "auroc_bound", "fpr95_bound"}``: the largest change any order of the
        pixels inside each cell could make (0 when every cell holds a single confidence, e.g.
        8-bit maps). E-AURC's bound is AURC's.
    """
    n_cell = np.asarray(count, np.float64)
    c_cell = np.asarray(correct, np.float64)
    e_cell = n_cell - c_cell
    total, errors = float(n_cell.sum()), float(e_cell.sum())
    right = total - errors
    out = dict.fromkeys((*FAILURE_KEYS, "aurc_bound", "auroc_bound", "fpr95_bound"), math.nan)
    if total == 0 or errors == 0:
        return out
    aurc, first, last = _aurc(n_cell[::-1], e_cell[::-1])
    optimal = (errors - right * float(_harmonic_gap(np.float64(right), np.float64(total)))) / total
    out.update(aurc=aurc / total, eaurc=(aurc / total) - optimal,
               aurc_bound=max(first - aurc, aurc - last) / total)
    if right == 0:
        return out
    # ascending confidence: correct pixels strictly more confident than each cell
    higher = right - np.cumsum(c_cell)
    out["auroc"] = float(np.sum(e_cell * (higher + 0.5 * c_cell)) / (errors * right))
    out["auroc_bound"] = float(np.sum(e_cell * c_cell) / (2.0 * errors * right))
    tpr = np.cumsum(e_cell) / errors
    j = int(np.argmax(tpr >= 0.95))  # first cell reaching 95 % of the errors
    out["fpr95"] = float(np.sum(c_cell[: j + 1]) / right)
    out["fpr95_bound"] = float(c_cell[j] / right)
    return out


def _aurc(n: np.ndarray, e: np.ndarray) -> tuple[float, float, float]:
    """``N · AURC`` for cells in descending confidence: expected over tie orders, and with the
    errors of every cell first (worst) or last (best)."""
    keep = n > 0
    n, e = n[keep], e[keep]
    c = n - e
    m = np.concatenate(([0.0], np.cumsum(n)[:-1]))  # pixels before each cell
    a = np.concatenate(([0.0], np.cumsum(e)[:-1]))  # errors before each cell
    b = e / n
    expected = n * b + (a - b * m) * _harmonic_gap(m, m + n)
    # errors first: (a + i)/(m + i) for i <= e, then (a + e)/(m + i)
    first = e + (a - m) * _harmonic_gap(m, m + e) + (a + e) * _harmonic_gap(m + e, m + n)
    # errors last: a/(m + i) for i <= c, then (a + i - c)/(m + i)
    last = a * _harmonic_gap(m, m + c) + (n - c) + (a - c - m) * _harmonic_gap(m + c, m + n)
    return float(expected.sum()), float(first.sum()), float(last.sum())


def risk_coverage(count: np.ndarray, correct: np.ndarray) -> dict[str, list[float]]:
    """The risk-coverage curve at the cell boundaries, most confident cells first.

    Args:
        count: ``(K,)`` pixels per confidence cell, cells in ascending confidence.
        correct: ``(K,)`` correctly classified pixels per cell.

    Returns:
        ``{"coverage", "risk", "oracle_risk"}``: for each non-empty cell (from the most
        confident), the share of pixels kept, the error rate among them, and the error rate an
        oracle ranking every error last would have at that coverage. Empty lists without pixels.
    """
    n = np.asarray(count, np.float64)[::-1]
    e = n - np.asarray(correct, np.float64)[::-1]
    keep = n > 0
    kept, errors = np.cumsum(n[keep]), np.cumsum(e[keep])
    total = float(n.sum())
    if total == 0:
        return {"coverage": [], "risk": [], "oracle_risk": []}
    right = total - float(e.sum())
    oracle = np.maximum(kept - right, 0.0) / kept
    return {"coverage": (kept / total).tolist(), "risk": (errors / kept).tolist(),
            "oracle_risk": oracle.tolist()}
