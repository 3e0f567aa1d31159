"""Which densecal options reproduce torchmetrics, MONAI, netcal and the ASLP reference code.

Each test here backs one row of ``docs/compatibility.md``. The references are called on the same
maps; the differences allowed are those of their accumulation precision (float32 in torchmetrics'
binning and in the ASLP script) and none otherwise. Maps avoid values exactly on bin edges where
the reference bins are [lo, hi) and densecal's are (lo, hi].
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _benchmark_scripts import BENCH_DIR, load_script
from densecal.metrics.functional import pixel_calibration

ASLP = load_script(BENCH_DIR / "aslp_official.py", "aslp_official_bench")


def blob_maps(seed: int, n: int = 4, size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Smooth probability maps (float64) and hard 0/1 masks that agree with them loosely."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    preds, masks = [], []
    for _ in range(n):
        cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.35)
        dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - r
        noisy = dist + rng.normal(0, 0.05, dist.shape)
        preds.append(1 / (1 + np.exp(rng.uniform(8, 40) * noisy)))
        masks.append((dist + rng.normal(0, 0.03, dist.shape) < 0).astype(np.float64))
    return np.stack(preds), np.stack(masks)


def test_torchmetrics_multiclass_two_channels_is_top_label() -> None:
    from torchmetrics.classification import MulticlassCalibrationError

    for seed in range(3):
        q, y = blob_maps(seed)
        q = np.where(q == 0.5, 0.5 + 1e-9, q)  # argmax ties at 0.5 break the other way there
        ours = pixel_calibration(torch.from_numpy(q), torch.from_numpy(y))
        probs = torch.from_numpy(np.stack([1 - q, q], axis=1))  # (N, 2, H, W)
        for key, norm in (("ece", "l1"), ("mce", "max")):
            metric = MulticlassCalibrationError(num_classes=2, n_bins=10, norm=norm)
            metric.update(probs, torch.from_numpy(y).long())
            assert float(ours[key]) == pytest.approx(float(metric.compute()), abs=1e-6)


@pytest.mark.parametrize(("reduction", "key"), [("expected", "ece"), ("maximum", "mce")])
def test_monai_calibration_error_is_per_image_positive(reduction: str, key: str) -> None:
    from monai.metrics import CalibrationErrorMetric

    q, y = blob_maps(7)
    metric = CalibrationErrorMetric(num_bins=10, include_background=True,
                                    calibration_reduction=reduction, metric_reduction="mean")
    metric(torch.from_numpy(q)[:, None].float(), torch.from_numpy(y)[:, None].float())
    ours = pixel_calibration(torch.from_numpy(q).float(), torch.from_numpy(y).float(),
                             confidence="positive", aggregate="per-image")
    assert float(ours[key]) == pytest.approx(float(metric.aggregate()), abs=1e-6)


def test_monai_average_is_not_densecal_ace() -> None:
    """MONAI's "average" (and netcal's ACE) is the unweighted mean over uniform bins."""
    from monai.metrics import CalibrationErrorMetric

    q, y = blob_maps(8, n=1)
    metric = CalibrationErrorMetric(num_bins=10, calibration_reduction="average")
    metric(torch.from_numpy(q)[:, None].float(), torch.from_numpy(y)[:, None].float())
    qt, yt = torch.from_numpy(q).float(), torch.from_numpy(y).float()
    from densecal.metrics.functional import reliability_bins

    table = reliability_bins(qt, yt, confidence="positive")
    filled = table["count"] > 0
    unweighted = (table["confidence"][filled] - table["accuracy"][filled]).abs().mean()
    assert float(metric.aggregate()) == pytest.approx(float(unweighted), abs=1e-6)
    ace = float(pixel_calibration(qt, yt, confidence="positive")["ace"])
    assert abs(ace - float(unweighted)) > 1e-3


@pytest.mark.parametrize(("name", "key"), [("ECE", "ece"), ("MCE", "mce")])
def test_netcal_binary_is_positive_pooled(name: str, key: str) -> None:
    metrics = pytest.importorskip("netcal.metrics", reason="netcal not installed (optional)")
    q, y = blob_maps(3)
    ours = pixel_calibration(torch.from_numpy(q), torch.from_numpy(y), confidence="positive")
    theirs = getattr(metrics, name)(bins=10).measure(q.reshape(-1), y.reshape(-1).astype(int))
    assert float(ours[key]) == pytest.approx(float(theirs), abs=1e-12)


def test_aslp_reference_script_is_official_protocol_on_8bit_maps() -> None:
    q, y = blob_maps(11, n=5, size=40)
    pred_u8 = np.round(q * 255).astype(np.uint8)
    gt_u8 = np.round(y * 255).astype(np.uint8)
    gt_u8[:, :3, :3] = 128  # soft ground-truth pixels: always wrong in the reference
    ece, oe, acc = ASLP.script_ece_oe(list(pred_u8), list(gt_u8))
    ours = pixel_calibration(torch.from_numpy(pred_u8.astype(np.float64) / 255.0),
                             torch.from_numpy(gt_u8.astype(np.float64) / 255.0),
                             target_type="strict")
    # float32 sums and the +1e-6 in the reference: agreement to ~1e-6
    assert float(ours["ece"]) == pytest.approx(ece, abs=2e-6)
    assert float(ours["oe"]) == pytest.approx(oe, abs=2e-6)
    assert float(ours["accuracy"]) == pytest.approx(acc, abs=2e-6)
