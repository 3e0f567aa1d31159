"""Tests of densecal.metrics.stochastic: hand-computed GED, brute-force HM-IoU, flip errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from densecal.errors import DensecalInputError
from densecal.metrics import StochasticSegmentationMetrics
from densecal.metrics.functional.stochastic import (
    flip_frequencies,
    flip_frequency_error,
    generalized_energy_distance,
    hungarian_matched_iou,
    iou_distance,
    pairwise_iou,
    sample_diversity,
)

S1 = [[1, 1], [0, 0]]
S2 = [[1, 0], [0, 0]]
Y1 = [[1, 1], [0, 0]]
Y2 = [[0, 0], [1, 1]]


def _ref_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Independent reference: mean foreground IoU over classes present in either map."""
    ious = []
    for c in sorted(set(np.unique(a)) | set(np.unique(b))):
        if c == 0:
            continue
        inter = np.sum((a == c) & (b == c), dtype=np.float64)
        union = np.sum((a == c) | (b == c), dtype=np.float64)
        ious.append(inter / union)
    return 1.0 if not ious else float(np.mean(ious))


def _ref_ged(s: np.ndarray, y: np.ndarray) -> float:
    d = lambda a, b: 1.0 - _ref_iou(a, b)  # noqa: E731
    cross = np.mean([d(a, b) for a in s for b in y])
    ss = np.mean([d(a, b) for a in s for b in s])
    yy = np.mean([d(a, b) for a in y for b in y])
    return 2 * cross - ss - yy


def test_iou_distance_hand_values() -> None:
    assert float(iou_distance(torch.tensor(S1), torch.tensor(S2))) == 0.5
    assert float(iou_distance(torch.tensor(S1), torch.tensor(Y2))) == 1.0
    zero = torch.zeros(2, 2, dtype=torch.long)
    assert float(iou_distance(zero, zero)) == 0.0
    assert float(iou_distance(zero, torch.tensor(S2))) == 1.0


def test_multiclass_conventions() -> None:
    a, b = torch.tensor([[1, 2], [0, 0]]), torch.tensor([[1, 1], [0, 0]])
    # present classes {1, 2}: IoU_1 = 1/2, IoU_2 = 0
    assert float(pairwise_iou(a[None], b[None])[0, 0]) == 0.25
    # the CARSSS evaluation: per-class IoU over a confusion matrix, NaN for a class absent from
    # both maps, nanmean over the foreground classes (written here from its description)
    carsss = []
    for cls in range(1, 4):
        tp = int(((a == cls) & (b == cls)).sum())
        fp_fn = int(((a == cls) ^ (b == cls)).sum())
        carsss.append(tp / (tp + fp_fn) if tp + fp_fn else math.nan)
    assert float(np.nanmean(carsss)) == 0.25 == float(pairwise_iou(a[None], b[None])[0, 0])
    # densecal's fixed class set: classes 1..3, class 3 absent from both counts as 1
    assert float(pairwise_iou(a[None], b[None], num_classes=4)[0, 0]) == 0.5
    # binary: both conventions agree
    s1, s2 = torch.tensor(S1)[None], torch.tensor(S2)[None]
    assert float(pairwise_iou(s1, s2, 2)[0, 0]) == float(pairwise_iou(s1, s2)[0, 0]) == 0.5


def test_ged_hand_computed() -> None:
    s, y = torch.tensor([S1, S2]), torch.tensor([Y1, Y2])
    # cross = (0 + 1 + 1/2 + 1) / 4, within S = 0.5 / 2 ... full 2x2 means
    assert float(generalized_energy_distance(s, y)) == 2 * 0.625 - 0.25 - 0.5
    ged = float(generalized_energy_distance(s, y, squared=False))
    assert ged == pytest.approx(math.sqrt(0.5), rel=1e-15)  # torch and math sqrt: 1 ulp apart
    assert generalized_energy_distance(s, y).dtype == torch.float64


def test_ged_weights_equal_duplicated_modes() -> None:
    s, y = torch.tensor([S1, S2]), torch.tensor([Y1, Y2])
    weighted = generalized_energy_distance(s, y, torch.tensor([0.75, 0.25]))
    assert float(weighted) == 0.25  # hand: 2 * 0.4375 - 0.25 - 0.375
    duplicated = generalized_energy_distance(s, torch.tensor([Y1, Y1, Y1, Y2]))
    assert float(weighted) == pytest.approx(float(duplicated), abs=1e-15)
    # unnormalised weights are normalised
    assert float(generalized_energy_distance(s, y, np.array([3.0, 1.0]))) == 0.25


def test_ged_zero_for_same_multiset_and_order_invariance() -> None:
    rng = np.random.default_rng(0)
    modes = torch.from_numpy(rng.integers(0, 3, size=(3, 5, 5)))
    samples = modes[[2, 0, 1, 1, 0, 2]]
    assert float(generalized_energy_distance(samples, modes)) == pytest.approx(0.0, abs=1e-12)
    other = torch.from_numpy(rng.integers(0, 3, size=(5, 5, 5)))
    perm = torch.tensor([3, 1, 4, 0, 2])
    for fn in (generalized_energy_distance, hungarian_matched_iou):
        assert float(fn(other, modes)) == pytest.approx(float(fn(other[perm], modes)), abs=1e-12)
    assert float(sample_diversity(other)) == pytest.approx(float(sample_diversity(other[perm])))


def test_ged_matches_float64_reference_on_random_maps() -> None:
    rng = np.random.default_rng(1)
    for _ in range(5):
        s = rng.integers(0, 4, size=(4, 6, 6))
        y = rng.integers(0, 4, size=(3, 6, 6))
        assert float(generalized_energy_distance(s, y)) == pytest.approx(_ref_ged(s, y),
                                                                         abs=1e-12)


def test_hungarian_matches_brute_force() -> None:
    rng = np.random.default_rng(2)
    for n, m in [(4, 4), (4, 2), (3, 2), (2, 1)]:
        s = rng.integers(0, 3, size=(n, 4, 4))
        y = rng.integers(0, 3, size=(m, 4, 4))
        tiled = [y[j % m] for j in range(n)]
        best = max(np.mean([_ref_iou(s[i], tiled[p[i]]) for i in range(n)])
                   for p in itertools.permutations(range(n)))
        assert float(hungarian_matched_iou(s, y)) == pytest.approx(best, abs=1e-12)


def test_diversity_hand_value() -> None:
    # d(S1, S2) = 1/2 off the diagonal of a 2x2 matrix -> 1/4
    assert float(sample_diversity(torch.tensor([S1, S2]))) == 0.25


def test_flip_frequencies_on_constructed_samples() -> None:
    base = torch.tensor([[1, 1, 3, 0]])
    flips = {1: (11, 0.5), 3: (13, 0.25), 5: (15, 0.75)}
    samples = torch.tensor([
        [[11, 1, 13, 0]],
        [[11, 11, 3, 0]],
        [[1, 1, 3, 0]],
        [[1, 1, 3, 0]],
    ])
    # class 1: 3 of 8 pixels are 11; class 3: 1 of 4 is 13; class 5 absent
    assert flip_frequencies(samples, base, flips) == {1: 0.375, 3: 0.25}
    assert flip_frequency_error(samples, base, flips) == {1: 0.125, 3: 0.0}


def test_conditional_flip_frequencies_ignore_other_readings() -> None:
    """Pixels a sample gives to background or another class leave the conditional share."""
    base = torch.tensor([[1, 1, 3, 0]])
    flips = {1: (11, 0.5), 3: (13, 0.25)}
    samples = torch.tensor([
        [[11, 0, 13, 0]],   # class 1: one twin, one background; class 3: twin
        [[11, 3, 0, 0]],    # class 1: one twin, one read as class 3; class 3: background
        [[1, 1, 0, 0]],     # class 1: two base; class 3: background
        [[0, 0, 0, 0]],     # nothing
    ])
    # class 1: 2 twins among 4 {1, 11} readings (unconditional 2/8); class 3: 1 twin of 1
    assert flip_frequencies(samples, base, flips) == {1: 0.25, 3: 0.25}
    assert flip_frequencies(samples, base, flips, conditional=True) == {1: 0.5, 3: 1.0}
    assert flip_frequency_error(samples, base, flips, conditional=True) == {1: 0.0, 3: 0.75}
    # a class no sample reads as itself or its twin has no conditional share
    assert flip_frequencies(torch.zeros(2, 1, 4, dtype=torch.long), base, flips,
                            conditional=True) == {}


def test_metric_accumulates_per_image_means() -> None:
    flips = {1: (2, 0.5)}
    samples = torch.tensor([[S1, S2], [Y2, Y2]])
    labels = torch.tensor([[Y1, Y2], [Y1, Y2]])
    base = torch.tensor([Y1, Y2])
    metric = StochasticSegmentationMetrics(flips=flips)
    metric.update(samples[:1], labels[:1], base_labels=base[:1])
    metric.update(samples[1:], labels[1:], base_labels=base[1:])
    out = metric.compute()
    ged = [float(generalized_energy_distance(samples[i], labels[i])) for i in range(2)]
    hm = [float(hungarian_matched_iou(samples[i], labels[i])) for i in range(2)]
    assert float(out["ged"]) == pytest.approx(np.mean(ged))
    assert float(out["hm_iou"]) == pytest.approx(np.mean(hm))
    assert float(out["diversity"]) == pytest.approx((0.25 + 0.0) / 2)
    # image 1: no sample pixel is class 2 -> error 0.5; image 2: 1 is absent from Y2? no:
    # base Y2 holds class 1 on the bottom row, samples Y2 keep it -> error 0.5
    assert float(out["flip_error"]) == 0.5
    assert float(out["flip_error/1"]) == 0.5
    assert float(out["flip_error_per_image"]) == 0.5


def _perfect_sampler(n_images: int, n_samples: int, p: float, seed: int):
    """Images with one object of class 1 (twin 2, flip probability p) and ``n_samples``
    samples each that flip the whole object with probability p: a perfect sampler."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.zeros(n_images, 8, 8, dtype=torch.long)
    base[:, 2:6, 2:6] = 1
    flip = torch.rand(n_images, n_samples, generator=gen) < p
    samples = base[:, None].repeat(1, n_samples, 1, 1)
    samples[flip[..., None, None] & (samples == 1)] = 2
    return samples, base


def test_pooled_flip_error_vanishes_for_a_perfect_sampler() -> None:
    """16 samples per image, 400 images, p = 0.3: the per-image errors stay near
    E|Bin(16, 0.3)/16 - 0.3| = 0.0918, the pooled error falls to the sampling noise of 6,400
    draws (sd 0.0057)."""
    samples, base = _perfect_sampler(400, 16, 0.3, seed=0)
    metric = StochasticSegmentationMetrics(flips={1: (2, 0.3)})
    for i in range(0, 400, 50):
        metric.update(samples[i:i + 50], base[i:i + 50, None], base_labels=base[i:i + 50])
    out = metric.compute()
    expected_per_image = sum(math.comb(16, k) * 0.3**k * 0.7 ** (16 - k) * abs(k / 16 - 0.3)
                             for k in range(17))
    assert expected_per_image == pytest.approx(0.0918, abs=1e-4)
    assert float(out["flip_error_per_image"]) == pytest.approx(expected_per_image, abs=0.01)
    assert float(out["flip_error"]) < 0.015  # 2.6 sd of the pooled share
    twins = int((samples == 2).sum())
    assert float(out["flip_error"]) == pytest.approx(abs(twins / (400 * 16 * 16) - 0.3),
                                                     abs=1e-15)


def test_bad_input() -> None:
    s = torch.tensor([S1, S2])
    with pytest.raises(DensecalInputError, match="samples"):
        generalized_energy_distance(s.float(), s)
    with pytest.raises(DensecalInputError, match="label_weights"):
        generalized_energy_distance(s, s, torch.tensor([1.0, -1.0]))
    with pytest.raises(DensecalInputError, match="spatial shape"):
        pairwise_iou(s, torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(DensecalInputError, match="num_classes"):
        pairwise_iou(s, s, num_classes=2 if int(s.max()) >= 2 else 1)
    with pytest.raises(DensecalInputError, match="base_labels"):
        StochasticSegmentationMetrics(flips={1: (2, 0.5)}).update(s[None], s[None])
