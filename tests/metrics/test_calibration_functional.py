"""Tests of densecal.metrics.functional.pixel_calibration / reliability_bins.

The reference below is written independently in float64 numpy: per-pixel loops / np.digitize
for the equal-width bins, bin means computed bin by bin, and a sort over every pixel for the
equal-mass bins of ACE (ties split in proportion, the documented rule).
"""

from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pytest
import torch
from torchmetrics.classification import BinaryCalibrationError

from densecal.errors import DensecalInputError
from densecal.metrics.functional import pixel_calibration, reliability_bins
from densecal.metrics.functional._calibration.binning import bin_index

KEYS = ("ece", "mce", "oe", "ace", "brier", "nll", "accuracy")


# ----------------------------------------------------------------------------- reference


def ref_pixels(q, y, *, confidence, target_type, threshold):
    """Per-pixel confidence, bin 'accuracy' and top-label correctness (float64 numpy)."""
    pred = q >= threshold
    if target_type == "hard":
        correct = (pred == (y >= 0.5)).astype(float)
        positive = (y >= 0.5).astype(float)
    elif target_type == "soft":
        correct = np.where(pred, y, 1.0 - y)
        positive = y.copy()
    else:  # strict: only exact 0/1 targets can be correct
        correct = np.array(
            [(p and t == 1.0) or (not p and t == 0.0) for p, t in zip(pred, y, strict=True)]
        )
        correct = correct.astype(float)
        positive = (y == 1.0).astype(float)
    if confidence == "top-label":
        return np.maximum(q, 1.0 - q), correct, correct
    return q.copy(), positive, correct


def ref_equal_mass_ace(conf, acc, n_bins, tie_key):
    """ACE over n_bins groups of equal mass N/n_bins of the sorted pixels; ties split evenly."""
    n = len(conf)
    order = np.argsort(tie_key, kind="stable")
    keys, conf, acc = tie_key[order], conf[order], acc[order]
    # collapse tied pixels into (mass, conf sum, acc sum) runs
    runs = []
    start = 0
    for i in range(1, n + 1):
        if i == n or keys[i] != keys[start]:
            runs.append([float(i - start), conf[start:i].sum(), acc[start:i].sum()])
            start = i
    cap = n / n_bins
    gaps = np.zeros(n_bins)
    g, room = 0, cap
    for mass, c_sum, a_sum in runs:
        left = mass
        while left > 1e-12 * n:
            take = min(left, room)
            gaps[g] += (c_sum - a_sum) * take / mass
            left -= take
            room -= take
            if room <= 1e-12 * n and g < n_bins - 1:
                g, room = g + 1, cap
    return float(np.abs(gaps).sum() / n)


def ref_one(q, y, *, n_bins, confidence, target_type, threshold, precision, tie_key=None):
    """Metrics of one set of pixels (float64 numpy), or None if it is empty."""
    if len(q) == 0:
        return None
    conf, acc, correct = ref_pixels(q, y, confidence=confidence, target_type=target_type,
                                    threshold=threshold)  # fmt: skip
    inner = np.array([k / n_bins for k in range(1, n_bins)]).astype(precision).astype(np.float64)
    idx = np.digitize(conf, inner, right=True)  # inner[i-1] < c <= inner[i]
    n = len(conf)
    ece = oe = 0.0
    mce = 0.0
    for b in range(n_bins):
        sel = idx == b
        if not sel.any():
            continue
        cb, ab = conf[sel].mean(), acc[sel].mean()
        ece += sel.sum() / n * abs(cb - ab)
        oe += sel.sum() / n * cb * max(cb - ab, 0.0)
        mce = max(mce, abs(cb - ab))
    qc = np.clip(q, 1e-7, 1 - 1e-7)
    key = conf if tie_key is None else tie_key(conf)
    return {
        "ece": ece,
        "mce": mce,
        "oe": oe,
        "ace": ref_equal_mass_ace(conf, acc, n_bins, key),
        "brier": np.mean((q - y) ** 2),
        "nll": np.mean(-(y * np.log(qc) + (1 - y) * np.log(1 - qc))),
        "accuracy": correct.mean(),
    }


def reference(preds, target, *, n_bins=10, input="probs", confidence="top-label",
              aggregate="pooled", target_type="hard", threshold=0.5, ignore_index=None,
              tie_key=None):  # fmt: skip
    """Reference metrics for (N, ...) arrays, pooled or per-image."""
    precision = preds.dtype if input == "probs" else np.float64
    x = preds.astype(np.float64).reshape(len(preds), -1)
    q = 1.0 / (1.0 + np.exp(-x)) if input == "logits" else x
    t = target.astype(np.float64).reshape(len(target), -1)
    keep = np.ones_like(t, bool) if ignore_index is None else t != ignore_index
    opts = dict(n_bins=n_bins, confidence=confidence, target_type=target_type,
                threshold=threshold, precision=precision, tie_key=tie_key)  # fmt: skip
    if aggregate == "pooled":
        return ref_one(q[keep], t[keep], **opts)
    per = [ref_one(q[i][keep[i]], t[i][keep[i]], **opts) for i in range(len(q))]
    per = [p for p in per if p is not None]
    return {k: np.mean([p[k] for p in per]) for k in KEYS}


# ----------------------------------------------------------------------------- data


def random_maps(seed, *, soft, n=4, h=12, w=10, with_edges=True):
    """Random probability maps with values on the bin edges, and hard or soft targets."""
    rng = np.random.default_rng(seed)
    q = rng.random((n, h, w))
    if with_edges:  # values exactly on edges k/10 and on the threshold
        spots = rng.random((n, h, w)) < 0.15
        q[spots] = rng.integers(0, 11, spots.sum()) / 10
    y = (rng.random((n, h, w)) < q).astype(float)
    if soft:
        fuzzy = rng.random((n, h, w)) < 0.4
        y[fuzzy] = rng.random(fuzzy.sum())
    return q, y


def assert_close(got, want, tol=1e-12, keys=KEYS):
    for k in keys:
        assert got[k].dtype == torch.float64
        assert got[k].ndim == 0
        assert abs(got[k].item() - want[k]) <= tol, (k, got[k].item(), want[k])


COMBOS = list(
    itertools.product(("top-label", "positive"), ("hard", "soft", "strict"),
                      ("pooled", "per-image"))
)  # fmt: skip


@pytest.mark.parametrize(("confidence", "target_type", "aggregate"), COMBOS)
@pytest.mark.parametrize("variant", ["probs", "logits", "ignore"])
def test_matches_reference_on_random_maps(confidence, target_type, aggregate, variant):
    seed = zlib.crc32(f"{confidence}{target_type}{aggregate}{variant}".encode())
    q, y = random_maps(seed, soft=target_type != "hard")
    opts = dict(confidence=confidence, target_type=target_type, aggregate=aggregate)
    preds = q
    if variant == "logits":
        preds = np.random.default_rng(7).normal(0, 3, q.shape)
        opts["input"] = "logits"
    if variant == "ignore":
        y = y.copy()
        y[np.random.default_rng(8).random(y.shape) < 0.2] = 255
        y[1] = 255  # an image with every pixel ignored: skipped in per-image mode
        opts["ignore_index"] = 255
    got = pixel_calibration(torch.from_numpy(preds), torch.from_numpy(y), **opts)
    want = reference(preds, y, **opts)
    assert_close(got, want, keys=("ece", "mce", "oe", "brier", "nll", "accuracy"))
    # ACE from the 4096-bin histogram: within the documented bound of the sorted reference
    assert abs(got["ace"].item() - want["ace"]) <= ace_bound(preds, y, opts)


def ace_bound(preds, y, opts, n_bins=10, fine_bins=4096):
    """(n_bins - 1)(1 + 1/F) max_j c_j / N per image (pooled: over all pixels)."""
    x = preds.reshape(len(preds), -1)
    q = 1 / (1 + np.exp(-x)) if opts.get("input") == "logits" else x
    c = np.maximum(q, 1 - q) if opts["confidence"] == "top-label" else q
    keep = np.ones(c.shape, bool) if "ignore_index" not in opts else y.reshape(c.shape) != 255
    rows = [c[keep]] if opts["aggregate"] == "pooled" else [c[i][keep[i]] for i in range(len(c))]
    bounds = []
    for r in rows:
        if len(r):
            counts = np.bincount(np.minimum(np.floor(r * fine_bins), fine_bins - 1).astype(int))
            bounds.append((n_bins - 1) * (1 + 1 / fine_bins) * counts.max() / len(r))
    return max(bounds)


@pytest.mark.parametrize("confidence", ["top-label", "positive"])
@pytest.mark.parametrize("aggregate", ["pooled", "per-image"])
def test_ace_exact_for_8bit_maps(confidence, aggregate):
    """8-bit levels k/255 never share a fine bin: ACE equals the sorted, tie-split reference."""
    rng = np.random.default_rng(3)
    q = rng.integers(0, 256, (3, 20, 20)) / 255.0
    y = rng.integers(0, 256, (3, 20, 20)) / 255.0  # soft 8-bit masks
    opts = dict(confidence=confidence, aggregate=aggregate, target_type="soft", n_bins=7)
    got = pixel_calibration(torch.from_numpy(q), torch.from_numpy(y), **opts)
    # ties are the 8-bit level of the confidence (max(q, 1-q) may differ by one ulp)
    want = reference(q, y, **opts, tie_key=lambda c: np.round(c * 255))
    assert_close(got, want)


def test_ace_exact_when_fine_bins_resolve_every_value():
    q, y = random_maps(11, soft=False, n=1, h=10, w=20, with_edges=False)
    c = np.maximum(q, 1 - q).ravel()
    fine = 2**20
    assert np.bincount(np.floor(c * fine).astype(int)).max() == 1  # precondition
    got = pixel_calibration(torch.from_numpy(q), torch.from_numpy(y), fine_bins=fine)
    assert abs(got["ace"].item() - reference(q, y)["ace"]) <= 1e-12


def test_ace_is_mass_weighted_not_netcal_mean_over_uniform_bins():
    # 3 pixels, 3 equal-mass groups of one pixel each: ACE = mean |c - a| = (0.4+0.1+0.4)/3
    q = torch.tensor([[0.6, 0.9, 0.6]], dtype=torch.float64)  # confidences .6, .9, .6
    y = torch.tensor([[1, 1, 0]])  # correct, correct, wrong
    got = pixel_calibration(q, y, n_bins=3)
    # groups by sorted conf: {.6 (tie: correct 1 and 0, split evenly)}, {.6}, {.9}
    # group 1 and 2 each: conf .6, acc .5 -> .1; group 3: conf .9, acc 1 -> .1
    assert got["ace"].item() == pytest.approx(0.1, abs=1e-15)


# ----------------------------------------------------------------------------- hand-computed


def test_hand_computed_bins_with_values_on_edges_positive():
    q = torch.tensor([[0.5, 0.75, 1.0, 0.25, 0.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0]])
    # n_bins=4, bins (lo, hi] with 0 in bin 0:
    # bin 0: {0.25, 0.0} conf .125 acc 0 | bin 1: {0.5} conf .5 acc 1
    # bin 2: {0.75} conf .75 acc 0       | bin 3: {1.0} conf 1 acc 1
    table = reliability_bins(q, y, n_bins=4, confidence="positive")
    assert table["count"].tolist() == [2.0, 1.0, 1.0, 1.0]
    assert table["confidence"].tolist() == [0.125, 0.5, 0.75, 1.0]
    assert table["accuracy"].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert table["bin_lower"].tolist() == [0.0, 0.25, 0.5, 0.75]
    assert table["bin_upper"].tolist() == [0.25, 0.5, 0.75, 1.0]
    m = pixel_calibration(q, y, n_bins=4, confidence="positive")
    # ECE = .4*.125 + .2*.5 + .2*.75 + .2*0 = .3
    assert m["ece"].item() == pytest.approx(0.3, abs=1e-15)
    # OE = .4*.125*.125 + .2*.75*.75 = .00625 + .1125
    assert m["oe"].item() == pytest.approx(0.11875, abs=1e-15)
    assert m["mce"].item() == 0.75
    # Brier = (.25 + .5625 + 0 + .0625 + 0) / 5
    assert m["brier"].item() == pytest.approx(0.175, abs=1e-15)
    # top-label accuracy at 0.5: preds 1,1,1,0,0 vs 1,0,1,0,0 -> 4/5
    assert m["accuracy"].item() == pytest.approx(0.8, abs=1e-15)


def test_hand_computed_bins_with_values_on_edges_top_label():
    q = torch.tensor([[0.5, 0.75, 1.0, 0.25, 0.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0]])
    # confidences .5 .75 1 .75 1; predictions 1 1 1 0 0; correct 1 0 1 1 1
    # bin 1 (.25, .5]: {.5} acc 1 | bin 2 (.5, .75]: {.75, .75} acc .5 | bin 3: {1, 1} acc 1
    table = reliability_bins(q, y, n_bins=4)
    assert table["count"].tolist() == [0.0, 1.0, 2.0, 2.0]
    assert math.isnan(table["confidence"][0]) and math.isnan(table["accuracy"][0])
    m = pixel_calibration(q, y, n_bins=4)
    assert m["ece"].item() == 0.2  # .2*.5 + .4*.25 (dyadic: exact)
    assert m["oe"].item() == 0.075  # .4 * .75 * .25
    assert m["mce"].item() == 0.5
    # ACE, 4 groups of mass 1.25 over sorted (.5 ok), (.75 x2, one ok), (1 x2 ok):
    # |.6875-1.125| + |.9375-.625| + |1.125-1| + 0 = .875, / 5
    assert m["ace"].item() == pytest.approx(0.175, abs=1e-15)


@pytest.mark.parametrize("n_bins", [3, 7, 10, 20])
def test_edge_values_land_in_lower_bin(n_bins):
    edges = torch.tensor([k / n_bins for k in range(n_bins + 1)], dtype=torch.float64)
    want = [0, *range(n_bins)]
    assert bin_index(edges, n_bins, top_label=False).tolist() == want
    # float32 values nearest the edges count as on the edge (ASLP compares in float32)
    e32 = edges.float().double()
    assert bin_index(e32, n_bins, top_label=False, precision=torch.float32).tolist() == want
    # top-label: q = j/n has confidence max(j, n - j)/n, exactly on an edge; 1 - q is never
    # rounded (q < 0.5 is binned from q itself)
    want_top = [max(j, n_bins - j) - 1 for j in range(n_bins + 1)]
    assert bin_index(edges, n_bins, top_label=True).tolist() == want_top
    assert bin_index(e32, n_bins, top_label=True, precision=torch.float32).tolist() == want_top


def test_edge_values_are_not_misplaced_like_ceil():
    # ceil(c * n) - 1 misplaces edge values: the float32 0.3 times 10 in float64 is
    # 3.0000001 (bin 3), and the float64 0.28 times 25 is 7.000000000000001 (bin 7).
    c32 = torch.tensor(0.3, dtype=torch.float32)
    assert math.ceil(c32.double().item() * 10) - 1 == 3
    assert math.ceil(0.28 * 25) - 1 == 7
    table = reliability_bins(c32.reshape(1, 1), torch.ones(1, 1), confidence="positive")
    assert table["count"][2].item() == 1  # (0.2, 0.3]
    table = reliability_bins(torch.tensor([[0.28]], dtype=torch.float64), torch.ones(1, 1),
                             n_bins=25, confidence="positive")  # fmt: skip
    assert table["count"][6].item() == 1  # (6/25, 7/25]


def exact_8bit_bins(n_bins):
    """Bin counts of the 256 levels k/255 (top-label) in exact integer arithmetic."""
    counts = [0] * n_bins
    for k in range(256):
        num = max(k, 255 - k)  # confidence num/255; bin b holds (b/n, (b+1)/n]
        counts[max(-(-num * n_bins // 255) - 1, 0)] += 1
    return counts


def aslp_bin_counts(n_bins):
    """The ASLP ECE.py binning of the 256 levels: float32 values vs float32 linspace edges."""
    pred = torch.arange(256, dtype=torch.uint8).float() / 255.0
    conf = torch.maximum(pred, 1.0 - pred)
    edges = torch.linspace(0, 1, steps=n_bins + 1)
    return [int((conf.gt(lo) * conf.le(hi)).sum()) for lo, hi in itertools.pairwise(edges)]


@pytest.mark.parametrize("n_bins", [*range(1, 31), 64, 100])
def test_binning_of_every_8bit_level_is_exact(n_bins):
    # float32 as loaded by the ASLP code, and float64 levels (not float32 cast to float64,
    # whose values lie above the float64 edges and are binned as such)
    levels = torch.arange(256, dtype=torch.float64)[None]
    for p in (levels.float() / 255.0, levels / 255.0):
        table = reliability_bins(p, torch.zeros_like(p), n_bins=n_bins)
        assert table["count"].tolist() == exact_8bit_bins(n_bins)


#: 8-bit levels k (map value k/255) that the ASLP ``ECE.py`` binning puts one bin too high, by
#: bin count, for 1..100 bins (docs/compatibility.md). Every other level, and every level at any
#: other bin count up to 100, lands in its exact bin. The float32 confidence max(k/255, 1 - k/255)
#: of these levels lies on an edge j/n that float32 ``torch.linspace`` rounds down.
ASLP_MISPLACED_LEVELS = {
    3: [170], 6: [170], 12: [170], 15: [102, 136, 153, 170], 24: [170],
    30: [102, 136, 153, 170], 33: [170], 45: [102, 136, 153], 48: [170],
    51: [90, 100, 110, 120, 130, 135, 140, 145, 150, 155, 160, 165, 170],
    60: [102, 136, 153, 170], 63: [170], 66: [170], 75: [102, 136, 153],
    85: [102, 108, 114, 120, 126, 129, 132, 135, 138, 141, 144, 147, 150, 153, 156],
    90: [102, 136, 153], 95: [102, 153], 96: [170],
}


def aslp_misplaced_levels(n_bins):
    """Levels whose ``ECE.py`` bin differs from the exact bin of (lo, hi], and by how much."""
    pred = torch.arange(256, dtype=torch.uint8).float() / 255.0
    conf = torch.maximum(pred, 1.0 - pred)
    edges = torch.linspace(0, 1, steps=n_bins + 1)
    moved = {}
    for k in range(256):
        (script,) = [j for j in range(n_bins) if conf[k] > edges[j] and conf[k] <= edges[j + 1]]
        num = max(k, 255 - k)
        exact = max(-(-num * n_bins // 255) - 1, 0)
        if script != exact:
            moved[k] = script - exact
    return moved


@pytest.mark.parametrize("n_bins", sorted(ASLP_MISPLACED_LEVELS))
def test_aslp_code_misplaces_exactly_these_levels(n_bins):
    moved = aslp_misplaced_levels(n_bins)
    assert sorted(moved) == ASLP_MISPLACED_LEVELS[n_bins]
    assert set(moved.values()) == {1}  # always one bin too high
    # densecal bins every level exactly, in float32 as the script reads them
    p = torch.arange(256, dtype=torch.float32)[None] / 255.0
    table = reliability_bins(p, torch.zeros_like(p), n_bins=n_bins)
    assert table["count"].tolist() == exact_8bit_bins(n_bins) != aslp_bin_counts(n_bins)


def test_aslp_code_bins_exactly_at_every_other_bin_count():
    others = [n for n in range(1, 101) if n not in ASLP_MISPLACED_LEVELS]
    assert all(exact_8bit_bins(n) == aslp_bin_counts(n) for n in others)
    # 153/255 with 15 bins: torch.linspace(0, 1, 16)[9] is 0.59999996 < float32(0.6)
    assert torch.linspace(0, 1, 16)[9].item() < torch.tensor(0.6).item()


# ----------------------------------------------------------------------------- torchmetrics


@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_positive_mode_matches_torchmetrics_binary_calibration_error(n_bins):
    max_diff = 0.0
    for seed in range(3):
        rng = np.random.default_rng(100 + seed)
        q = torch.from_numpy(rng.random((4, 32, 32)))
        y = torch.from_numpy((rng.random((4, 32, 32)) < q.numpy() ** 2).astype(np.int64))
        ours = pixel_calibration(q, y, n_bins=n_bins, confidence="positive")
        for norm, key in (("l1", "ece"), ("max", "mce")):
            tm = BinaryCalibrationError(n_bins=n_bins, norm=norm)
            tm.update(q, y)
            diff = abs(tm.compute().item() - ours[key].item())
            max_diff = max(max_diff, diff)
    assert max_diff < 1e-13  # observed ~1e-16 (float64 inputs)


def test_torchmetrics_differs_on_edge_values_as_documented():
    # torchmetrics bins are [lo, hi) (and 1.0 alone in an extra bin): 0.5 falls in the upper
    # half there, in the lower half here (the ASLP rule (lo, hi]).
    q = torch.tensor([[0.5, 0.9]], dtype=torch.float64)
    y = torch.tensor([[0, 1]])
    ours = pixel_calibration(q, y, n_bins=2, confidence="positive")["ece"].item()
    assert ours == pytest.approx(0.5 * 0.5 + 0.5 * 0.1, abs=1e-15)  # two bins
    tm = BinaryCalibrationError(n_bins=2, norm="l1")
    tm.update(q, y)
    assert tm.compute().item() == pytest.approx(0.7 - 0.5, abs=1e-12)  # one bin [0.5, 1)


# ----------------------------------------------------------------------------- options


def test_brier_and_nll_use_the_target_as_given_in_every_mode():
    q, y = random_maps(21, soft=True)
    base = pixel_calibration(torch.from_numpy(q), torch.from_numpy(y))
    for conf, tt in itertools.product(("top-label", "positive"), ("hard", "soft", "strict")):
        m = pixel_calibration(torch.from_numpy(q), torch.from_numpy(y), confidence=conf,
                              target_type=tt)  # fmt: skip
        assert m["brier"].item() == base["brier"].item()
        assert m["nll"].item() == base["nll"].item()


def test_channel_dim_and_integer_target_accepted():
    q, y = random_maps(4, soft=False)
    a = pixel_calibration(torch.from_numpy(q), torch.from_numpy(y))
    b = pixel_calibration(torch.from_numpy(q)[:, None], torch.from_numpy(y).long())
    c = pixel_calibration(torch.from_numpy(q), torch.from_numpy(y)[:, None].bool())
    for k in KEYS:  # integer/bool targets may take the fused kernel: same sums, other order
        assert b[k].item() == c[k].item()
        assert a[k].item() == pytest.approx(b[k].item(), rel=1e-12, abs=0)


def test_threshold_changes_predictions_not_confidences():
    q = torch.tensor([[0.6, 0.6]], dtype=torch.float64)
    y = torch.tensor([[1, 0]])
    assert pixel_calibration(q, y, threshold=0.5)["accuracy"].item() == 0.5
    m = pixel_calibration(q, y, threshold=0.7)  # both predicted background
    assert m["accuracy"].item() == 0.5
    q2 = torch.tensor([[0.6, 0.6, 0.6]], dtype=torch.float64)
    y2 = torch.tensor([[1, 1, 0]])
    assert pixel_calibration(q2, y2, threshold=0.7)["accuracy"].item() == pytest.approx(1 / 3)


def test_all_pixels_ignored_gives_nan():
    m = pixel_calibration(torch.rand(2, 3, 3), torch.full((2, 3, 3), 255), ignore_index=255)
    assert all(math.isnan(v.item()) for v in m.values())


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "preds", "target", "where"),
    [
        ({}, torch.rand(2, 4, 4), torch.rand(2, 4, 5), "target"),
        ({}, torch.tensor([[0.5, float("nan")]]), torch.zeros(1, 2), "preds"),
        ({"input": "logits"}, torch.tensor([[0.5, float("inf")]]), torch.zeros(1, 2), "preds"),
        ({}, torch.rand(1, 2), torch.tensor([[0.0, float("nan")]]), "target"),
        ({}, torch.rand(1, 2), torch.tensor([[0.0, 1.5]]), "target"),
        ({"ignore_index": 255}, torch.rand(1, 3), torch.tensor([[0.0, 255, -1]]), "target"),
        ({}, torch.tensor([[1, 0]]), torch.zeros(1, 2), "preds"),
        ({}, torch.tensor(0.5), torch.tensor(1.0), "preds"),
        ({"confidence": "top"}, torch.rand(1, 2), torch.zeros(1, 2), "confidence"),
        ({"aggregate": "mean"}, torch.rand(1, 2), torch.zeros(1, 2), "aggregate"),
        ({"target_type": "fuzzy"}, torch.rand(1, 2), torch.zeros(1, 2), "target_type"),
        ({"input": "prob"}, torch.rand(1, 2), torch.zeros(1, 2), "input"),
        ({"n_bins": 0}, torch.rand(1, 2), torch.zeros(1, 2), "n_bins"),
        ({"n_bins": 2.5}, torch.rand(1, 2), torch.zeros(1, 2), "n_bins"),
        ({"fine_bins": 0}, torch.rand(1, 2), torch.zeros(1, 2), "fine_bins"),
        ({"threshold": 1.5}, torch.rand(1, 2), torch.zeros(1, 2), "threshold"),
        ({"ignore_index": float("nan")}, torch.rand(1, 2), torch.zeros(1, 2), "ignore_index"),
    ],
)
def test_bad_input_raises_naming_the_argument(kwargs, preds, target, where):
    for func in (pixel_calibration, reliability_bins):
        with pytest.raises(DensecalInputError) as info:
            func(preds, target, **kwargs)
        message = str(info.value)
        assert message.startswith(f"{where}: ") and "\n" not in message


def test_probabilities_out_of_range_message():
    preds = torch.tensor([[-0.2, 0.5, 3.1]])
    with pytest.raises(DensecalInputError) as info:
        pixel_calibration(preds, torch.zeros(1, 3))
    assert str(info.value) == (
        "preds: values outside [0, 1] (min -0.2, max 3.1); pass input='logits' for raw scores"
    )
    # the same scores are fine as logits
    assert pixel_calibration(preds, torch.zeros(1, 3), input="logits")["ece"].isfinite()


def test_ignore_index_pixels_are_excluded_from_range_check():
    y = torch.tensor([[0.0, 1.0, 255.0]])
    m = pixel_calibration(torch.tensor([[0.2, 0.9, 0.5]]), y, ignore_index=255)
    assert m["accuracy"].item() == 1.0


@pytest.mark.parametrize("aggregate", ["pooled", "per-image"])
def test_chunked_update_equals_single_chunk(monkeypatch, aggregate):
    import densecal.metrics.functional.calibration as calibration

    q, y = random_maps(31, soft=True)
    y[0, :3] = 255
    opts = dict(aggregate=aggregate, ignore_index=255, target_type="soft")
    whole = pixel_calibration(torch.from_numpy(q), torch.from_numpy(y), **opts)
    monkeypatch.setattr(calibration, "_CHUNK_PIXELS_CPU", 37)  # pooled: 13 chunks; 1 image each
    chunked = pixel_calibration(torch.from_numpy(q), torch.from_numpy(y), **opts)
    assert_close(chunked, {k: v.item() for k, v in whole.items()}, tol=1e-14)
