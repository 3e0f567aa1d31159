"""Failure detection from the confidence histogram, against sklearn and float64 references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from densecal.metrics.functional._calibration.failure import failure_detection


def _cells(conf: np.ndarray, right: np.ndarray, edges: np.ndarray | None = None):
    """Per-cell (count, correct), ascending confidence: one cell per distinct value, or the
    cells of ``edges``."""
    if edges is None:
        levels, index = np.unique(conf, return_inverse=True)
        k = len(levels)
    else:
        index, k = np.searchsorted(edges, conf, side="left"), len(edges) + 1
    return (np.bincount(index, minlength=k).astype(float),
            np.bincount(index, right.astype(float), minlength=k))


def _aurc_sorted(conf: np.ndarray, right: np.ndarray) -> float:
    """Mean selective risk over coverages, most confident first (no ties in ``conf``)."""
    order = np.argsort(-conf, kind="stable")
    errors = np.cumsum(~right[order])
    return float(np.mean(errors / np.arange(1, len(conf) + 1)))


def _aurc_expected_over_ties(conf: np.ndarray, right: np.ndarray) -> float:
    """The same, averaging a tie's order: the i-th pixel of a tie of n pixels and e errors,
    after m pixels with a errors, has selective risk (a + i e / n) / (m + i)."""
    total, m, a = 0.0, 0, 0
    for level in np.unique(conf)[::-1]:
        tie = conf == level
        n, e = int(tie.sum()), int((~right[tie]).sum())
        total += sum((a + i * e / n) / (m + i) for i in range(1, n + 1))
        m, a = m + n, a + e
    return total / len(conf)


def _eight_bit(seed: int, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 256, n) / 255.0
    truth = rng.random(n) < q  # calibrated-ish: confident pixels are right more often
    conf = np.maximum(q, 1.0 - q)
    return conf, (q >= 0.5) == truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eight_bit_maps_agree_with_sklearn_and_the_tie_reference(seed: int) -> None:
    conf, right = _eight_bit(seed)
    out = failure_detection(*_cells(conf, right))
    is_error = ~right
    assert out["auroc"] == pytest.approx(roc_auc_score(is_error, -conf), abs=1e-12)
    fpr, tpr, _ = roc_curve(is_error, -conf, drop_intermediate=False)
    assert out["fpr95"] == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)
    assert out["aurc"] == pytest.approx(_aurc_expected_over_ties(conf, right), abs=1e-12)
    assert out["auroc_bound"] > 0  # ties of one level: the histogram is exact, the bound says
    # how far an arbitrary tie order could move the value, not an error of densecal's


def test_distinct_confidences_match_the_sorted_definition() -> None:
    rng = np.random.default_rng(5)
    conf = 0.5 + 0.5 * rng.random(3000)
    right = rng.random(3000) < conf
    out = failure_detection(*_cells(conf, right))
    assert out["aurc"] == pytest.approx(_aurc_sorted(conf, right), abs=1e-12)
    assert out["aurc_bound"] == pytest.approx(0.0, abs=1e-12)
    assert out["auroc"] == pytest.approx(roc_auc_score(~right, -conf), abs=1e-12)
    # E-AURC: minus the oracle that ranks every error last
    oracle = np.where(right, 1.0, 0.0) + rng.random(3000) * 1e-3  # errors least confident
    assert out["eaurc"] == pytest.approx(out["aurc"] - _aurc_sorted(oracle, right), abs=1e-12)


def test_the_tie_rule_is_the_mean_over_all_orders() -> None:
    conf = np.array([0.9, 0.9, 0.9, 0.7, 0.7, 0.6])
    right = np.array([True, False, True, False, True, False])
    values = []
    for order in itertools.permutations(range(6)):
        order = list(order)
        if all(conf[order[k]] >= conf[order[k + 1]] for k in range(5)):  # confidence-sorted
            errors = np.cumsum(~right[order])
            values.append(np.mean(errors / np.arange(1, 7)))
    assert failure_detection(*_cells(conf, right))["aurc"] == pytest.approx(
        np.mean(values), abs=1e-12)


def test_float_maps_stay_within_the_reported_bound() -> None:
    rng = np.random.default_rng(9)
    conf = 0.5 + 0.5 * rng.random(5000)
    right = rng.random(5000) < conf ** 2
    exact = {"aurc": _aurc_sorted(conf, right), "auroc": roc_auc_score(~right, -conf)}
    fpr, tpr, _ = roc_curve(~right, -conf, drop_intermediate=False)
    exact["fpr95"] = fpr[np.argmax(tpr >= 0.95)]
    for cells in (16, 64, 256):
        out = failure_detection(*_cells(conf, right, np.linspace(0.5, 1.0, cells + 1)))
        for key in ("aurc", "auroc", "fpr95"):
            assert abs(out[key] - exact[key]) <= out[f"{key}_bound"] + 1e-12, (cells, key)
        assert out["auroc_bound"] < 0.5 / cells * 4  # narrower cells, tighter bound


def test_undefined_cases_are_nan() -> None:
    assert all(np.isnan(v) for v in failure_detection(np.zeros(4), np.zeros(4)).values())
    no_errors = failure_detection(np.array([3.0, 2.0]), np.array([3.0, 2.0]))
    assert np.isnan(no_errors["aurc"]) and np.isnan(no_errors["auroc"])
    all_wrong = failure_detection(np.array([3.0, 2.0]), np.array([0.0, 0.0]))
    assert all_wrong["aurc"] == pytest.approx(1.0) and all_wrong["eaurc"] == pytest.approx(0.0)
    assert np.isnan(all_wrong["auroc"]) and np.isnan(all_wrong["fpr95"])


def test_risk_coverage_curve_ends_at_the_error_rate() -> None:
    import torch

    from densecal.metrics.calibration import PixelCalibration

    m = PixelCalibration()
    p = torch.rand(2, 24, 24, generator=torch.Generator().manual_seed(0))
    m.update(p, torch.rand(2, 24, 24, generator=torch.Generator().manual_seed(1)) < p)
    curve = m.risk_coverage()
    error = 1.0 - float(m.compute()["accuracy"])
    assert curve["coverage"][-1] == pytest.approx(1.0)
    assert curve["risk"][-1] == pytest.approx(error) == curve["oracle_risk"][-1]
    assert all(a < b for a, b in zip(curve["coverage"], curve["coverage"][1:], strict=False))
    assert curve["oracle_risk"][0] == 0.0  # the most confident pixels are right for an oracle
    # a coarse sum under the step curve is close to AURC
    cov = np.diff([0.0, *curve["coverage"]])
    assert float(np.sum(cov * np.asarray(curve["risk"]))) == pytest.approx(
        float(m.compute()["aurc"]), abs=0.01)


def test_failure_detection_can_be_left_out() -> None:
    import torch

    from densecal.metrics.calibration import PixelCalibration

    p = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(2))
    full, light = PixelCalibration(), PixelCalibration(failure_detection=False)
    for m in (full, light):
        m.update(p, p > 0.3)
    assert set(full.compute()) - set(light.compute()) == {"aurc", "eaurc", "auroc", "fpr95"}
    assert all(torch.equal(full.compute()[k], v) for k, v in light.compute().items())
