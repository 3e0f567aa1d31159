"""The fused CPU kernel (numba) against the torch path: identical counts, sums to rounding.

Every state field of :func:`binary_update` is compared: bin and fine counts must be
equal exactly (same keys, same edge rule), float64 sums to 1e-12 relative (summation order).
Inputs stress the edge rule: every bin edge k/n in float32 and float64, its float32 neighbours,
0, 1/2 and 1.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from densecal.errors import DensecalInputError
from densecal.metrics.functional._calibration import numba_kernel as _fused
from densecal.metrics.functional._calibration.options import parse_options
from densecal.metrics.functional.calibration import (
    binary_update,
    pixel_calibration,
    reliability_bins,
)

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
    _state_close(binary_update(preds, target, options),
                 torch_path(binary_update, preds, target, options))


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
        fused = binary_update(preds, target, options)
    finally:
        torch.set_num_threads(threads)
    plain = torch_path(binary_update, preds, target, options)
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


def _state_close(a, b) -> None:
    for name in a._fields:
        x, y = getattr(a, name), getattr(b, name)
        if name in EXACT_FIELDS:
            assert torch.equal(x, y), name
        else:
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12, msg=name)


def _u8_maps(seed: int = 4) -> torch.Tensor:
    """(5, 1, 20, 20) uint8 maps holding every value 0..255 at least once."""
    gen = torch.Generator().manual_seed(seed)
    flat = torch.randint(0, 256, (5 * 20 * 20,), generator=gen, dtype=torch.uint8)
    flat[:256] = torch.arange(256, dtype=torch.uint8)
    return flat[torch.randperm(flat.numel(), generator=gen)].view(5, 1, 20, 20)


@pytest.mark.parametrize(
    ("n_bins", "confidence", "aggregate", "threshold", "fused"),
    list(itertools.product((10, 7), ("top-label", "positive"), ("pooled", "per-image"),
                           (0.5, 0.3), (True, False))),
)
def test_uint8_maps_equal_float32_maps(n_bins, confidence, aggregate, threshold, fused,
                                       torch_path) -> None:
    """8-bit maps v give the state of the float32 maps v / 255 (torch path on those)."""
    values = _u8_maps()
    target = torch.rand(values.shape, generator=torch.Generator().manual_seed(5)) < 0.4
    options = _options(n_bins=n_bins, confidence=confidence, aggregate=aggregate,
                       threshold=threshold)
    run = (lambda fn, *a: fn(*a)) if fused else torch_path
    state = run(binary_update, values, target.long(), options)
    floats = torch_path(binary_update, values.float() / 255, target, options)
    _state_close(state, floats)


def test_uint8_hand_values() -> None:
    """v = 0, 51, 153, 255 are q = 0, 0.2, 0.6, 1 in float32; 153/255 sits on the edge 0.6."""
    values = torch.tensor([[0, 51, 153, 255]], dtype=torch.uint8)
    table = reliability_bins(values, torch.tensor([[0, 0, 1, 1]]), n_bins=5)
    # confidences 1, 0.8, 0.6, 1: bins 4, 3, 2 (0.6 = upper edge of (0.4, 0.6]), 4
    assert table["count"].tolist() == [0.0, 0.0, 1.0, 1.0, 2.0]
    out = pixel_calibration(values, torch.tensor([[0, 0, 1, 1]]))
    q = np.float32([0, 51, 153, 255]) / np.float32(255)
    assert out["brier"].item() == pytest.approx(
        (q[0] ** 2 + q[1] ** 2 + (1 - q[2]) ** 2) / 4, rel=1e-12)


def test_uint8_other_targets_and_logits(torch_path) -> None:
    values = _u8_maps()
    soft = torch.rand(values.shape, generator=torch.Generator().manual_seed(6))
    for kwargs in ({"target_type": "soft"}, {"ignore_index": 255}):
        void = (soft * 2).floor().where(soft < 0.9, 255.0)  # 0/1, or 255 for void pixels
        target = soft if "target_type" in kwargs else void
        got = pixel_calibration(values, target, **kwargs)
        want = torch_path(pixel_calibration, values.float() / 255, target, **kwargs)
        for key in got:
            torch.testing.assert_close(got[key], want[key], rtol=1e-12, atol=1e-13)
    with pytest.raises(DensecalInputError, match="expected a floating-point tensor"):
        pixel_calibration(values, soft > 0.5, input="logits")


BAD_INPUTS = [
    ("preds", lambda q, y: (q.index_put((torch.tensor([3]),), torch.tensor(1.5)), y)),
    ("preds", lambda q, y: (q.index_put((torch.tensor([7]),), torch.tensor(-0.25)), y)),
    ("preds", lambda q, y: (q.index_put((torch.tensor([0]),), torch.tensor(float("nan"))), y)),
    ("target", lambda q, y: (q, y.index_put((torch.tensor([5]),), torch.tensor(2)))),
    ("target", lambda q, y: (q, y.index_put((torch.tensor([9]),), torch.tensor(-1)))),
]


@pytest.mark.parametrize(("where", "corrupt"), BAD_INPUTS)
@pytest.mark.parametrize("aggregate", ["pooled", "per-image"])
def test_checks_in_the_kernel_raise_the_same_errors(where, corrupt, aggregate,
                                                    torch_path) -> None:
    """Value checks folded into the kernel pass: same exception and message as the torch path."""
    gen = torch.Generator().manual_seed(7)
    q, y = corrupt(torch.rand(2 * 300, generator=gen), (torch.rand(600, generator=gen) < .5).long())
    q, y = q.view(2, 300), y.view(2, 300)
    with pytest.raises(DensecalInputError) as fused:
        pixel_calibration(q, y, aggregate=aggregate)
    with pytest.raises(DensecalInputError) as plain:
        torch_path(pixel_calibration, q, y, aggregate=aggregate)
    assert str(fused.value) == str(plain.value)
    assert str(fused.value).startswith(where + ":")


def test_unchecked_bad_values_stay_in_range() -> None:
    """validate_args=False with NaN / out-of-range probabilities: every pixel counted, no crash."""
    q = torch.tensor([[float("nan"), 1.5, -0.5, 3.0e38, -float("inf"), 0.25]])
    y = torch.tensor([[1, 0, 1, 0, 1, 7]])
    for confidence in ("top-label", "positive"):
        state = binary_update(q, y, _options(confidence=confidence), validate=False)
        assert state.count.item() == 6
        assert state.bin_count.sum().item() == 6
        assert state.fine_count.sum().item() == 6


@pytest.mark.parametrize("confidence", ["top-label", "positive"])
def test_subnormal_probabilities_equal_torch_path(confidence, torch_path) -> None:
    """Probabilities computed in float64 and stored as float32 are subnormal (0 < q < 2^-126)
    for logits in (-103, -87): the kernel reads them as 0 only in the edge test (a faster
    path), which must not change a single count or sum."""
    gen = torch.Generator().manual_seed(5)
    logits = torch.empty(4, 64, 64, dtype=torch.float64).uniform_(-104.0, 104.0, generator=gen)
    preds = torch.sigmoid(logits).float()
    tiny = torch.finfo(torch.float32).tiny
    subnormal = (preds > 0) & (preds < tiny)
    assert 0.05 < subnormal.float().mean().item() < 0.15
    preds.view(-1)[:5] = torch.tensor([tiny, tiny / 2, 2.0**-149, 0.0, 1.0])
    target = torch.rand(preds.shape, generator=gen) < 0.5
    for n_bins in (15, 10):
        options = _options(n_bins=n_bins, confidence=confidence)
        _state_close(binary_update(preds, target, options),
                     torch_path(binary_update, preds, target, options))


def test_profiling_parts_leave_the_full_kernel_unchanged() -> None:
    """maps_kernel without the subnormal guard (a profiling variant) gives the same counts and
    sums as the kernel densecal runs, on subnormal-rich maps; without ``count`` nothing is
    counted."""
    q = torch.sigmoid(torch.linspace(-104.0, 20.0, 4099)).numpy()
    t = (np.arange(q.size) % 3 == 0).astype(np.int64)

    def run(parts: frozenset[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        count, conf, sums = np.zeros(8 * 65, np.int64), np.zeros(2 * 65), np.zeros(2)
        bad = _fused.maps_kernel(True, parts, cache=False)(
            q, t, np.float32(15), np.float32(0.5), np.float32(0.5), 64, count, conf, sums)
        return count, conf, sums, bad

    full = run(_fused.PARTS)
    unguarded = run(_fused.PARTS - {"subnormal_guard"})
    assert np.array_equal(full[0], unguarded[0]) and full[0].sum() == q.size
    assert np.array_equal(full[1], unguarded[1]) and np.array_equal(full[2], unguarded[2])
    assert full[3] == unguarded[3] == 0
    assert run(_fused.PARTS - {"count"})[0].sum() == 0
