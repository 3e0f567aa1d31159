"""Tests of the streaming metric densecal.metrics.PixelCalibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from densecal.errors import DensecalInputError
from densecal.metrics import PixelCalibration
from densecal.metrics.functional import pixel_calibration, reliability_bins

KEYS = ("ece", "mce", "oe", "ace", "brier", "nll", "accuracy")
MODES = [
    {},
    {"aggregate": "per-image"},
    {"confidence": "positive", "target_type": "soft"},
    {"confidence": "positive", "aggregate": "per-image", "target_type": "strict"},
    {"input": "logits", "ignore_index": 255, "target_type": "soft"},
    {"input": "logits", "ignore_index": 255, "aggregate": "per-image", "n_bins": 15},
]


def make_batch(seed, n=6, h=9, w=11, logits=False, ignore=False):
    gen = torch.Generator().manual_seed(seed)
    q = torch.rand(n, h, w, generator=gen, dtype=torch.float64)
    y = (torch.rand(n, h, w, generator=gen, dtype=torch.float64) < q).double()
    soft = torch.rand(n, h, w, generator=gen) < 0.3
    y[soft] = torch.rand(int(soft.sum()), generator=gen, dtype=torch.float64)
    if ignore:
        y[torch.rand(n, h, w, generator=gen) < 0.2] = 255
        y[0] = 255  # one image fully ignored
    preds = torch.logit(q.clamp(1e-6, 1 - 1e-6)) * 1.7 if logits else q
    return preds, y


def batch_for(mode, seed):
    return make_batch(seed, logits=mode.get("input") == "logits", ignore="ignore_index" in mode)


def assert_same(a, b, tol=1e-13):
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=tol, rtol=0.0, equal_nan=True, msg=k)


@pytest.mark.parametrize("mode", MODES)
def test_module_equals_functional(mode):
    preds, y = batch_for(mode, 0)
    metric = PixelCalibration(**mode)
    metric.update(preds, y)
    assert_same(metric.compute(), pixel_calibration(preds, y, **mode), tol=0.0)
    options = {k: v for k, v in mode.items() if k != "aggregate"}
    # per-image mode sums the per-image histograms: same sums, other rounding order
    assert_same(metric.reliability(), reliability_bins(preds, y, **options), tol=1e-13)


@pytest.mark.parametrize("mode", MODES)
def test_batch_split_and_image_order_do_not_matter(mode):
    preds, y = batch_for(mode, 1)
    whole = pixel_calibration(preds, y, **mode)
    split = PixelCalibration(**mode)
    for lo, hi in ((0, 1), (1, 4), (4, 6)):
        split.update(preds[lo:hi], y[lo:hi])
    assert_same(split.compute(), whole)
    perm = torch.randperm(len(preds), generator=torch.Generator().manual_seed(2))
    assert_same(pixel_calibration(preds[perm], y[perm], **mode), whole)


@pytest.mark.parametrize("mode", MODES)
def test_merging_two_metric_states_equals_one_pass(mode):
    """DDP reduces every state by sum: two ranks' states merged == one metric on all data."""
    (p1, y1), (p2, y2) = batch_for(mode, 3), batch_for(mode, 4)
    rank0, rank1, single = (PixelCalibration(**mode) for _ in range(3))
    rank0.update(p1, y1)
    rank1.update(p2, y2)
    single.update(torch.cat([p1, p2]), torch.cat([y1, y2]))
    manual = {k: rank0.metric_state[k] + rank1.metric_state[k] for k in rank0.metric_state}
    assert all(rank0._reductions[k] is not None for k in rank0.metric_state)  # sum reduce
    rank0.merge_state(rank1)
    assert_same(rank0.compute(), single.compute())
    for k, v in manual.items():
        assert torch.equal(v, rank0.metric_state[k])


def test_state_size_is_constant_and_states_are_float64():
    metric = PixelCalibration(n_bins=10, aggregate="per-image")
    sizes = []
    for seed in range(5):
        metric.update(*make_batch(seed, n=2 + seed))
        sizes.append({k: tuple(v.shape) for k, v in metric.metric_state.items()})
    assert all(s == sizes[0] for s in sizes)
    assert metric.state_size() == 3 * 10 + 3 * 4096 + 4 + 7 + 1
    assert all(v.dtype == torch.float64 for v in metric.metric_state.values())
    assert metric.image_count.item() == sum(2 + s for s in range(5))
    assert metric.count.item() == sum(2 + s for s in range(5)) * 9 * 11


def test_per_image_mean_and_skipping_fully_ignored_images():
    preds, y = make_batch(5, ignore=True)
    metric = PixelCalibration(aggregate="per-image", ignore_index=255)
    metric.update(preds, y)
    got = metric.compute()
    singles = [pixel_calibration(preds[i : i + 1], y[i : i + 1], ignore_index=255)
               for i in range(1, len(preds))]  # fmt: skip
    for k in KEYS:
        assert got[k].item() == pytest.approx(np.mean([s[k].item() for s in singles]), abs=1e-13)
    assert metric.image_count.item() == len(preds) - 1


def test_per_image_differs_from_pooled():
    preds, y = make_batch(6)
    preds[0] = 0.99  # one confident image dominates differently under the two aggregations
    pooled = pixel_calibration(preds, y)
    per = pixel_calibration(preds, y, aggregate="per-image")
    assert abs(pooled["ece"].item() - per["ece"].item()) > 1e-3


def test_reset_and_empty_compute():
    metric = PixelCalibration()
    metric.update(*make_batch(7))
    metric.reset()
    with pytest.warns(UserWarning):  # torchmetrics: compute before update
        out = metric.compute()
    assert all(math.isnan(v.item()) for v in out.values())


def test_constructor_options_are_validated():
    for kwargs, where in (
        ({"n_bins": 0}, "n_bins"),
        ({"confidence": "max"}, "confidence"),
        ({"aggregate": "per_image"}, "aggregate"),
        ({"target_type": "binary"}, "target_type"),
        ({"input": "scores"}, "input"),
        ({"fine_bins": -1}, "fine_bins"),
        ({"threshold": -0.1}, "threshold"),
    ):
        with pytest.raises(DensecalInputError, match=rf"^{where}: "):
            PixelCalibration(**kwargs)


def test_update_validates_inputs():
    metric = PixelCalibration()
    with pytest.raises(DensecalInputError, match=r"^preds: values outside"):
        metric.update(torch.tensor([[1.5, 0.2]]), torch.zeros(1, 2))
    with pytest.raises(DensecalInputError, match=r"^target: shape"):
        metric.update(torch.rand(2, 3, 3), torch.zeros(2, 3, 4))
    assert metric.count.item() == 0


def test_metric_attributes():
    assert PixelCalibration.full_state_update is False
    assert PixelCalibration.is_differentiable is False
    assert PixelCalibration.higher_is_better is False


def test_merge_state_counts_as_update_and_invalidates_cached_compute():
    import warnings

    a, b = PixelCalibration(), PixelCalibration()
    p = torch.tensor([[0.75, 0.25]])
    y = torch.tensor([[1.0, 0.0]])
    b.update(p, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a.merge_state(b)
        first = a.compute()["ece"]
    assert float(first) == 0.25
    wrong = PixelCalibration()
    wrong.update(torch.tensor([[0.75, 0.75]]), torch.tensor([[0.0, 0.0]]))
    a.merge_state(wrong)  # now 2 correct + 2 wrong pixels: a stale cache would say 1.0
    assert float(a.compute()["accuracy"]) == 0.5
