"""Tests of the single-pass kernel behind pixel_calibration (cell keys, counts, product NLL).

The kernel bins each pixel by (uniform cell, above-nearest-edge) and regroups cells into the
equal-width bins afterwards; these tests check that regroup against the per-value rule, the
float32 path against an independent float64 numpy reference, and the benchmark script.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from densecal.metrics.functional import pixel_calibration
from densecal.metrics.functional._calibration.binary_kernel import sum_neg_log
from densecal.metrics.functional._calibration.binning import (
    bin_index,
    cell_bins,
    cell_index,
    cell_resolution,
    conf_above_edge,
)

ROOT = Path(__file__).resolve().parents[2]


def tricky_float32_values(n_bins: int, seed: int = 0) -> torch.Tensor:
    """Random float32 values plus every edge k/n, 1 - k/n, midpoint and their neighbours."""
    k = torch.arange(n_bins + 1, dtype=torch.float64)
    special = torch.cat([k / n_bins, 1 - k / n_bins, (k + 0.5) / n_bins, torch.tensor([0.5])])
    special = special.clamp(0, 1).float()
    near = torch.cat([torch.nextafter(special, torch.tensor(2.0)),
                      torch.nextafter(special, torch.tensor(-1.0))]).clamp(0, 1)  # fmt: skip
    rand = torch.rand(4000, generator=torch.Generator().manual_seed(seed))
    return torch.cat([special, near, rand])


@pytest.mark.parametrize("n_bins", [1, 2, 3, 7, 10, 15, 20, 64, 100])
@pytest.mark.parametrize("fine_bins", [4096, 5, 1020])
@pytest.mark.parametrize("top_label", [True, False])
def test_cell_table_gives_the_exact_bin_of_every_value(n_bins, fine_bins, top_label):
    q = tricky_float32_values(n_bins)
    q64 = q.double()
    n_cells = cell_resolution(n_bins, fine_bins)
    assert n_cells % fine_bins == 0 and n_cells >= 4 * n_bins
    conf = torch.maximum(q64, 1 - q64) if top_label else q64
    key = cell_index(conf, n_cells).long() * 2 + conf_above_edge(q, n_bins, top_label=top_label)
    via_cells = cell_bins(n_bins, n_cells)[key]
    want = bin_index(q64, n_bins, top_label=top_label, precision=torch.float32)
    assert torch.equal(via_cells, want)


def numpy_reference(q32, y, *, n_bins, top_label):
    """ECE/MCE/OE/Brier/NLL/accuracy of float32 maps, float64 numpy, bins by edge counting."""
    q = q32.astype(np.float64).ravel()
    y = y.astype(np.float64).ravel()
    edges = np.array([np.float32(k / n_bins) for k in range(1, n_bins)], dtype=np.float64)
    pos = q >= 0.5
    correct = (pos == (y >= 0.5)).astype(float)
    if top_label:
        conf, acc = np.maximum(q, 1 - q), correct
        # c in (e_k, e_k+1] for q >= .5; for q < .5 the bin counts the edges above q
        b = np.where(pos, (edges[None] < q[:, None]).sum(1), (edges[None] > q[:, None]).sum(1))
    else:
        conf, acc = q, y
        b = (edges[None] < q[:, None]).sum(1)
    n = len(q)
    ece = oe = mce = 0.0
    for k in range(n_bins):
        sel = b == k
        if sel.any():
            gap = conf[sel].mean() - acc[sel].mean()
            ece += sel.sum() / n * abs(gap)
            oe += sel.sum() / n * conf[sel].mean() * max(gap, 0.0)
            mce = max(mce, abs(gap))
    qc = np.clip(q, 1e-7, 1 - 1e-7)
    nll = -np.mean(y * np.log(qc) + (1 - y) * np.log(1 - qc))
    return {"ece": ece, "mce": mce, "oe": oe, "brier": np.mean((q - y) ** 2), "nll": nll,
            "accuracy": correct.mean()}  # fmt: skip


@pytest.mark.parametrize("confidence", ["top-label", "positive"])
@pytest.mark.parametrize("n_bins", [10, 15])
@pytest.mark.parametrize("target_dtype", [torch.int64, torch.bool, torch.float32])
def test_float32_maps_match_float64_reference(confidence, n_bins, target_dtype):
    values = tricky_float32_values(n_bins, seed=n_bins)[:3000]
    q = values[torch.randperm(len(values), generator=torch.Generator().manual_seed(1))]
    q = q[: len(q) // 6 * 6].reshape(6, -1)  # 6 images, odd widths: padding of the NLL blocks
    y = torch.rand(q.shape, generator=torch.Generator().manual_seed(2)) < q
    got = pixel_calibration(q, y.to(target_dtype), n_bins=n_bins, confidence=confidence)
    want = numpy_reference(q.numpy(), y.numpy(), n_bins=n_bins,
                           top_label=confidence == "top-label")  # fmt: skip
    for key, value in want.items():
        assert abs(got[key].item() - value) <= 1e-12, key


def test_soft_valued_target_uses_the_two_log_nll():
    # one soft value among 0/1 targets: the product shortcut must not be taken
    q = torch.tensor([[0.2, 0.7, 0.9, 0.4]], dtype=torch.float64)
    y = torch.tensor([[0.0, 1.0, 0.25, 1.0]], dtype=torch.float64)
    want = -(y * q.log() + (1 - y) * (1 - q).log()).mean()
    assert abs(pixel_calibration(q, y)["nll"].item() - want.item()) <= 1e-15


@pytest.mark.parametrize("n", [1, 31, 32, 33, 1000])
def test_product_of_32_then_log_equals_sum_of_logs(n):
    v = torch.rand(2, n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    v[0, 0] = 1e-7  # the NLL clamp: 32 of these still do not underflow
    v[1, :] = torch.where(torch.arange(n) % 2 == 0, 1e-7, v[1])
    want = -v.log().sum(-1)
    got = sum_neg_log(v)
    assert torch.allclose(got, want, rtol=1e-14, atol=0)


def test_benchmark_script_quick_prints_the_json_keys():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "calibration_metrics.py"), "--quick",
         "--n-maps", "4", "--size", "64"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    result = json.loads(out.stdout)
    assert {"machine", "data", "seconds", "megapixels_per_s", "ratios", "ece_positive",
            "memory", "targets"} <= set(result)  # fmt: skip
    assert {"read_pass", "densecal_top_label", "densecal_positive", "torchmetrics_binary",
            "torchmetrics_multiclass"} <= set(result["seconds"])  # fmt: skip
    assert {"densecal_vs_torchmetrics_binary", "densecal_time_over_read_pass"} <= set(
        result["ratios"]
    )
    assert result["ece_positive"]["max_abs_diff"] < 1e-3  # same quantity, other edge rule
    assert result["machine"]["torch"] == torch.__version__
    assert "growth_mb" in result["memory"]
