"""Failure detection at pixel level: densecal's exact values against sklearn and TorchUncertainty.

On four 384 x 384 synthetic 8-bit maps (589,824 pixels; the truth drawn with probability close
to the prediction), prints one JSON object with

* densecal's ``aurc, eaurc, auroc, fpr95`` (``pixel_calibration`` on the uint8 levels);
* the largest difference to sklearn's ``roc_auc_score`` / ``roc_curve`` (AUROC, FPR95) and to a
  float64 reference that averages the selective risk over tie orders (AURC);
* TorchUncertainty's AURC as its code computes it (written here from its description: the
  oracle's risk curve subtracted, trapezoid on coverages 1/N..1), on every pixel with two tie
  orders and on 20 random 1 % pixel samples (how TorchUncertainty evaluates segmentation).

Usage::

    python benchmarks/failure_detection.py [--seed 0] [--write]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from densecal.metrics.functional import pixel_calibration

RESULT = Path(__file__).resolve().parent / "results" / "failure_detection.json"


def _tie_averaged_aurc(conf: np.ndarray, right: np.ndarray) -> float:
    """Mean selective risk over coverages, a tie's order averaged (float64, per tie)."""
    _, index = np.unique(conf, return_inverse=True)
    n = np.bincount(index).astype(float)[::-1]
    e = n - np.bincount(index, right.astype(float))[::-1]
    total, m, a = 0.0, 0.0, 0.0
    for n_j, e_j in zip(n, e, strict=True):
        i = np.arange(1, n_j + 1)
        total += float(np.sum((a + i * e_j / n_j) / (m + i)))
        m, a = m + n_j, a + e_j
    return total / len(conf)


def _torch_uncertainty_aurc(conf: np.ndarray, errors: np.ndarray,
                            rng: np.random.Generator | None = None) -> float:
    """TorchUncertainty's AURC: risk minus oracle risk, trapezoid over coverage i/N."""
    n = len(conf)
    order = (np.argsort(-conf, kind="stable") if rng is None
             else np.lexsort((rng.random(n), -conf)))
    steps = np.arange(1, n + 1)
    risk = np.cumsum(errors[order]) / steps
    oracle = np.cumsum(np.sort(errors)) / steps
    return float(np.trapezoid(risk - oracle, steps / n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    levels = rng.integers(0, 256, (4, 384, 384), dtype=np.uint8)
    q = levels / 255.0
    truth = rng.random(q.shape) < np.clip(1.1 * q - 0.05, 0.0, 1.0)
    ours = {k: float(v) for k, v in pixel_calibration(
        torch.from_numpy(levels), torch.from_numpy(truth)).items()}
    # exact 8-bit confidences: max(q, 1 - q) in float64 would split the tie of levels 127
    # and 128 (both 128/255) by one rounding
    conf = np.maximum(levels, 255 - levels).ravel() / 255.0
    right = ((q >= 0.5) == truth).ravel()
    errors = (~right).astype(np.float64)
    fpr, tpr, _ = roc_curve(~right, -conf, drop_intermediate=False)
    reference = {"auroc": roc_auc_score(~right, -conf), "fpr95": fpr[np.argmax(tpr >= 0.95)],
                 "aurc": _tie_averaged_aurc(conf, right)}
    samples = []
    for draw in range(20):
        sample_rng = np.random.default_rng(1000 + draw)
        pick = sample_rng.random(conf.size) < 0.01
        samples.append(_torch_uncertainty_aurc(conf[pick], errors[pick], sample_rng))
    result = {
        "pixels": int(conf.size), "error_rate": float(errors.mean()),
        "densecal": {k: ours[k] for k in ("aurc", "eaurc", "auroc", "fpr95")},
        "largest_difference_to_reference": {
            k: float(abs(ours[k] - v)) for k, v in reference.items()},
        "torch_uncertainty_aurc": {
            "all_pixels_ties_in_index_order": _torch_uncertainty_aurc(conf, errors),
            "all_pixels_ties_shuffled": _torch_uncertainty_aurc(
                conf, errors, np.random.default_rng(1)),
            "one_percent_sample_mean": float(np.mean(samples)),
            "one_percent_sample_std": float(np.std(samples)),
            "one_percent_sample_range": [float(min(samples)), float(max(samples))],
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.write:
        RESULT.write_text(text + "\n")


if __name__ == "__main__":
    main()
