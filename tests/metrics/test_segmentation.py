"""Tests for densecal.metrics.segmentation (SOD accuracy measures through pysodmetrics)."""

from __future__ import annotations

import warnings

import numpy as np
import py_sod_metrics as psm
import pytest

from densecal.errors import DensecalInputError
from densecal.metrics.segmentation import SOD_KEYS, SODMetrics, dice_iou

# A 2x2 case on exactly representable numbers.
PRED = np.array([[0.75, 0.25], [0.5, 0.0]])
GT = np.array([[1.0, 0.0], [0.0, 0.0]])


def test_mae_dice_iou_hand_computed() -> None:
    m = SODMetrics()
    per = m.update(PRED, GT)
    # |0.75-1| + |0.25-0| + |0.5-0| + 0 = 1.0 over 4 pixels.
    assert per["mae"] == 0.25
    # P = {(0,0), (1,0)} (0.5 >= 0.5), G = {(0,0)}: |P∩G| = 1, |P|+|G| = 3, |P∪G| = 2.
    assert per["dice"] == pytest.approx(2 / 3, abs=1e-15)
    assert per["iou"] == 0.5
    assert dice_iou(PRED, GT) == (pytest.approx(2 / 3, abs=1e-15), 0.5)


def test_dice_threshold_and_soft_truth() -> None:
    # At 0.8 nothing is predicted, the truth is not empty: both 0.
    assert dice_iou(PRED, GT, threshold=0.8) == (0.0, 0.0)
    # A soft truth of exactly 0.5 counts as foreground: G = P = {(0,0), (1,0)}.
    soft = np.array([[0.9, 0.0], [0.5, 0.3]])
    assert dice_iou(PRED, soft) == (1.0, 1.0)


def test_empty_prediction_and_empty_truth_score_one() -> None:
    zeros = np.zeros((3, 3))
    assert dice_iou(zeros, zeros) == (1.0, 1.0)
    assert dice_iou(np.full((3, 3), 0.2), zeros) == (1.0, 1.0)
    # Non-empty prediction on an empty truth (OOD false alarm): 0.
    one_fg = zeros.copy()
    one_fg[1, 1] = 0.9
    assert dice_iou(one_fg, zeros) == (0.0, 0.0)
    m = SODMetrics()
    m.update(zeros, zeros)
    m.update(one_fg, zeros)
    out = m.compute()
    assert out["dice"] == 0.5 and out["iou"] == 0.5


def test_raw_protocol_keeps_probabilities() -> None:
    # All-0.1 map on an empty truth: raw MAE is 0.1; S-measure (empty truth) = 1 - mean = 0.9.
    q = np.full((8, 8), 0.1)
    y = np.zeros((8, 8))
    raw = SODMetrics("raw")
    raw.update(q, y)
    out = raw.compute()
    assert out["mae"] == pytest.approx(0.1, abs=1e-15)
    assert out["s_measure"] == pytest.approx(0.9, abs=1e-15)
    # "official" quantises to 8 bits: round(25.5) = 26 (constant map, not normalised).
    off = SODMetrics("official")
    off.update(q, y)
    assert off.compute()["mae"] == pytest.approx(26 / 255, abs=1e-15)


def test_official_protocol_min_max_normalises() -> None:
    # A map in [0.2, 0.4]: raw MAE vs an empty truth is 0.3; "official" stretches it to {0, 1}.
    q = np.array([[0.2, 0.4], [0.2, 0.4]])
    y = np.zeros((2, 2))
    raw = SODMetrics("raw").update(q, y)
    off = SODMetrics("official").update(q, y)
    assert raw["mae"] == pytest.approx(0.3, abs=1e-15)
    assert off["mae"] == 0.5
    # Dice on the prepared map: raw predicts nothing (1.0 on the empty truth), official
    # predicts the stretched half (0.0).
    assert raw["dice"] == 1.0 and off["dice"] == 0.0


def _random_pairs(seed: int, n: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        h, w = 24 + 3 * i, 31 - 2 * i
        yy, xx = np.mgrid[:h, :w]
        blob = ((yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (h / 4) ** 2).astype(np.float64)
        # Soft truth with anti-aliased-like values; predictions not spanning [0, 1].
        y = np.clip(blob + rng.normal(0, 0.2, (h, w)) * (rng.random((h, w)) < 0.1), 0, 1)
        q = np.clip(0.15 + 0.6 * blob + rng.normal(0, 0.15, (h, w)), 0.05, 0.9)
        pairs.append((q, y))
    pairs.append((np.full((10, 12), 0.3), np.zeros((10, 12))))  # OOD-style empty truth
    return pairs


def _pysod_reference(pairs, normalize: bool, prep) -> dict[str, float]:
    """Run pysodmetrics' classic classes directly (the MATLAB-equivalent reference), with the
    E-measure curve of each image rescaled from the code's H*W - 1 to the paper's H*W."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # psm.Fmeasure announces its future removal
        fm = psm.Fmeasure()
    em, sm, wfm, mae = psm.Emeasure(), psm.Smeasure(), psm.WeightedFmeasure(), psm.MAE()
    for q, y in pairs:
        p, g = prep(q, y)
        for metric in (fm, em, sm, wfm, mae):
            metric.step(p, g, normalize=normalize)
    f = fm.get_results()["fm"]
    sizes = [q.size for q, _ in pairs]
    e_curve = np.mean([c * (n - 1) / n for c, n in zip(em.changeable_ems, sizes, strict=True)],
                      axis=0)
    return {
        "mae": mae.get_results()["mae"], "max_f": f["curve"].max(), "mean_f": f["curve"].mean(),
        "adaptive_f": f["adp"], "max_e": e_curve.max(), "mean_e": e_curve.mean(),
        "s_measure": sm.get_results()["sm"], "weighted_f": wfm.get_results()["wfm"],
    }


def _reference_dice_iou(p: np.ndarray, g: np.ndarray) -> tuple[float, float]:
    tp = float(np.sum(p & g))
    fp = float(np.sum(p & ~g))
    fn = float(np.sum(~p & g))
    if tp + fp + fn == 0:
        return 1.0, 1.0
    return 2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn)


@pytest.mark.parametrize("seed", [0, 1])
def test_official_matches_pysodmetrics_on_uint8_maps(seed: int) -> None:
    pairs = _random_pairs(seed)

    def to_u8(q, y):
        return np.rint(q * 255).astype(np.uint8), np.rint(y * 255).astype(np.uint8)

    ref = _pysod_reference(pairs, normalize=True, prep=to_u8)
    m = SODMetrics("official")
    dices, ious = [], []
    for q, y in pairs:
        m.update(q, y)
        q8, y8 = to_u8(q, y)
        qn = q8 / 255.0
        if qn.max() > qn.min():
            qn = (qn - qn.min()) / (qn.max() - qn.min())
        d, i = _reference_dice_iou(qn >= 0.5, y8 > 128)
        dices.append(d)
        ious.append(i)
    out = m.compute()
    assert list(out) == list(SOD_KEYS)
    assert all(type(v) is float for v in out.values())
    for key, value in ref.items():
        assert out[key] == pytest.approx(float(value), rel=1e-12, abs=1e-12), key
    assert out["dice"] == pytest.approx(np.mean(dices), abs=1e-12)
    assert out["iou"] == pytest.approx(np.mean(ious), abs=1e-12)
    # The random maps do not span [0, 1], so the raw protocol must give other numbers.
    raw = SODMetrics("raw")
    for q, y in pairs:
        raw.update(q, y)
    assert abs(raw.compute()["mae"] - out["mae"]) > 1e-3


def test_raw_matches_pysodmetrics_without_normalisation() -> None:
    pairs = _random_pairs(2)
    ref = _pysod_reference(pairs, normalize=False, prep=lambda q, y: (q, y >= 0.5))
    m = SODMetrics("raw")
    for q, y in pairs:
        m.update(q, y)
    out = m.compute()
    for key, value in ref.items():
        assert out[key] == pytest.approx(float(value), rel=1e-12, abs=1e-12), key
    ref_d = [_reference_dice_iou(q >= 0.5, y >= 0.5) for q, y in pairs]
    assert out["dice"] == pytest.approx(np.mean([d for d, _ in ref_d]), abs=1e-12)
    assert out["iou"] == pytest.approx(np.mean([i for _, i in ref_d]), abs=1e-12)


def test_reset_forgets_images() -> None:
    m = SODMetrics()
    m.update(PRED, GT)
    m.reset()
    m.update(np.zeros((2, 2)), np.zeros((2, 2)))
    assert m.n_images == 1
    assert m.compute()["mae"] == 0.0


@pytest.mark.parametrize(
    ("pred", "gt", "match"),
    [
        (np.zeros((2, 3)), np.zeros((3, 2)), "does not match"),
        (np.array([[np.nan, 0.0]]), np.zeros((1, 2)), "NaN"),
        (np.array([[1.5, 0.0]]), np.zeros((1, 2)), r"\[0, 1\]"),
        (np.zeros((1, 2)), np.array([[-0.1, 0.0]]), r"^gt: values"),
        (np.zeros((2, 2, 3)), np.zeros((2, 2, 3)), "2-D"),
    ],
)
def test_bad_input_raises(pred: np.ndarray, gt: np.ndarray, match: str) -> None:
    with pytest.raises(DensecalInputError, match=match):
        SODMetrics().update(pred, gt)
    with pytest.raises(DensecalInputError, match=match):
        dice_iou(pred, gt)


def test_bad_options_raise() -> None:
    with pytest.raises(DensecalInputError, match="protocol"):
        SODMetrics(protocol="matlab")
    with pytest.raises(DensecalInputError, match="threshold"):
        SODMetrics(threshold=0.0)
    with pytest.raises(DensecalInputError, match="no image"):
        SODMetrics().compute()


# ------------------------------------------------- degenerate maps: every value stays a fraction


@pytest.mark.parametrize("protocol", ["raw", "official"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (5, 1), (2, 2), (8, 8)])
@pytest.mark.parametrize("truth", ["empty", "full", "stripes"])
@pytest.mark.parametrize("pred", ["zeros", "ones", "constant", "random", "perfect"])
def test_degenerate_maps_give_fractions_without_warnings(protocol: str, shape: tuple[int, int],
                                                         truth: str, pred: str) -> None:
    rng = np.random.default_rng(3)
    y = {"empty": np.zeros(shape), "full": np.ones(shape),
         "stripes": (np.arange(np.prod(shape)).reshape(shape) % 2).astype(float)}[truth]
    q = {"zeros": np.zeros(shape), "ones": np.ones(shape), "constant": np.full(shape, 0.3),
         "random": rng.random(shape), "perfect": y.copy()}[pred]
    m = SODMetrics(protocol)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pysodmetrics' empty-slice mean would warn here
        m.update(q, y)
        out = m.compute()
    assert all(0.0 <= v <= 1.0 for v in out.values()), out


@pytest.mark.parametrize("shape", [(1, 1), (8, 8), (1, 7)])
def test_e_measure_of_a_perfect_empty_map_is_one(shape: tuple[int, int]) -> None:
    # paper (Fan et al. 2018, eq. 6): mean of the enhanced-alignment matrix over H*W pixels;
    # the reference code gives H*W / (H*W - 1): 64/63 on 8x8, 4.5e15 on 1x1
    m = SODMetrics()
    m.update(np.zeros(shape), np.zeros(shape))
    assert m.compute()["max_e"] == 1.0


def test_s_measure_of_a_perfect_one_row_map_is_one() -> None:
    # truth [0,1,0,1,0]: centroid (0, 2) -> blocks [0:1, 0:3] and [0:1, 3:5] (SSIM 1 each, weights
    # 3/5 and 2/5) and two empty blocks of weight 0 (pysodmetrics: NaN); object term 1
    y = np.array([[0.0, 1.0, 0.0, 1.0, 0.0]])
    m = SODMetrics()
    m.update(y.copy(), y)
    assert m.compute()["s_measure"] == pytest.approx(1.0, abs=1e-12)
