"""The fused CPU kernel (numba) against the torch path: identical counts, sums to rounding.

Every state field of :func:`_calibration_update` is compared: bin and fine counts must be
equal exactly (same keys, same edge rule), float64 sums to 1e-12 relative (summation order).
Inputs stress the edge rule: every bin edge k/n in float32 and float64, its float32 neighbours,
0, 1/2 and 1.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from densecal.metrics.functional import _fused
from densecal.metrics.functional._options import parse_options
from densecal.metrics.functional.calibration import _calibration_update, pixel_calibration

pytest.importorskip("numba")

EXACT_FIELDS = ("bin_count", "fine_count", "count", "correct")


def _options(**overrides: object):
    kwargs = dict(n_bins=10, input="probs", confidence="top-label", aggregate="pooled",
                  target_type="hard", threshold=0.5, ignore_index=None, fine_bins=4096)
    kwargs.update(overrides)
    return parse_options(**kwargs)


@pytest.fixture
def torch_path(monkeypatch: pytest.MonkeyPatch):
    """Run a callable with the fused kernel disabled."""

    def run(fn, *args, **kwargs):
        with monkeypatch.context() as m:
            m.setenv("DENSECAL_FUSED", "0")
            _fused._kernel.cache_clear()
            try:
                return fn(*args, **kwargs)
            finally:
                _fused._kernel.cache_clear()

    return run


def _edge_maps(n_bins: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """(6, 40, 40) maps: all edges k/n, their float32 neighbours, 0, 1/2, 1, then uniform."""
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    f32 = edges.astype(np.float32)
    special = np.concatenate([edges, f32.astype(np.float64),
                              np.nextafter(f32, np.float32(2)).astype(np.float64),
                              np.nextafter(f32, np.float32(-1)).astype(np.float64),
                              [0.0, 0.5, 1.0, 1.0 - 1e-9, 1e-9]])
    special = np.clip(special, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    flat = rng.random(6 * 40 * 40)
    flat[: special.size] = special
    rng.shuffle(flat)
    return torch.from_numpy(flat.reshape(6, 40, 40)).to(dtype)


@pytest.mark.parametrize(
    ("n_bins", "dtype", "confidence", "aggregate", "threshold"),
    list(itertools.product((10, 15, 7), (torch.float32, torch.float64),
                           ("top-label", "positive"), ("pooled", "per-image"), (0.5, 0.3))),
)
def test_fused_state_equals_torch_path(n_bins, dtype, confidence, aggregate, threshold,
                                       torch_path) -> None:
    preds = _edge_maps(n_bins, dtype)
    target = torch.rand(preds.shape, generator=torch.Generator().manual_seed(1)) < 0.4
    options = _options(n_bins=n_bins, confidence=confidence, aggregate=aggregate,
                       threshold=threshold)
    assert _fused.fused_eligible(preds, target, options)
    fused = _calibration_update(preds, target, options)
    plain = torch_path(_calibration_update, preds, target, options)
    for name in fused._fields:
        a, b = getattr(fused, name), getattr(plain, name)
        if name in EXACT_FIELDS:
            assert torch.equal(a, b), name
        else:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.parametrize("target_dtype", [torch.bool, torch.uint8, torch.int32, torch.int64])
def test_fused_target_dtypes_and_logits(target_dtype, torch_path) -> None:
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 1, 33, 47, generator=gen) * 4  # odd sizes: uneven thread pieces
    target = (torch.rand(3, 1, 33, 47, generator=gen) < 0.5).to(target_dtype)
    for kwargs in ({"input": "logits"}, {}):
        x = logits if kwargs else torch.sigmoid(logits)
        fused = pixel_calibration(x, target, **kwargs)
        plain = torch_path(pixel_calibration, x, target, **kwargs)
        for key in fused:
            torch.testing.assert_close(fused[key], plain[key], rtol=1e-12, atol=1e-13)


def test_fused_splits_long_rows_across_threads(torch_path) -> None:
    """A pooled row longer than the per-thread piece: pieces add up to the single pass."""
    gen = torch.Generator().manual_seed(3)
    preds = torch.rand(1, 3 * _fused._MIN_PIECE + 17, generator=gen)
    target = torch.rand(preds.shape, generator=gen) < 0.3
    options = _options()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        fused = _calibration_update(preds, target, options)
    finally:
        torch.set_num_threads(threads)
    plain = torch_path(_calibration_update, preds, target, options)
    assert torch.equal(fused.bin_count, plain.bin_count)
    torch.testing.assert_close(fused.brier, plain.brier, rtol=1e-13, atol=0)
    torch.testing.assert_close(fused.nll, plain.nll, rtol=1e-13, atol=0)


def test_fused_hand_values() -> None:
    """Four pixels by hand: q = (0.25, 0.5, 0.75, 1), y = (0, 1, 1, 0), 4 bins, top-label."""
    preds = torch.tensor([[0.25, 0.5, 0.75, 1.0]])
    target = torch.tensor([[0, 1, 1, 0]], dtype=torch.bool)
    out = pixel_calibration(preds, target, n_bins=4)
    # confidences 0.75, 0.5, 0.75, 1 in bins 2, 1, 2, 3; correct 1, 1, 1, 0:
    # bin 1 |0.5 - 1|, bin 2 |1.5 - 2|, bin 3 |1 - 0|
    assert out["ece"].item() == (0.5 + 0.5 + 1) / 4
    assert out["accuracy"].item() == 0.75
    assert out["brier"].item() == pytest.approx((0.0625 + 0.25 + 0.0625 + 1) / 4, abs=1e-15)
    nll = -(np.log(0.75) + np.log(0.5) + np.log(0.75) + np.log(1.0 - (1.0 - 1e-7))) / 4
    assert out["nll"].item() == pytest.approx(nll, rel=1e-12)


def test_fused_not_used_where_it_would_differ() -> None:
    preds = torch.rand(2, 8, 8)
    hard = preds > 0.5
    assert _fused.fused_eligible(preds, hard, _options())
    assert not _fused.fused_eligible(preds, hard.double(), _options())  # float targets
    assert not _fused.fused_eligible(preds, hard, _options(ignore_index=255))
    assert not _fused.fused_eligible(preds, hard, _options(target_type="soft"))
    assert not _fused.fused_eligible(preds.half(), hard, _options())
