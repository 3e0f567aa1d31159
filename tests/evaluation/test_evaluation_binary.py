"""From maps to the densecal.evaluate/2 result: hand-computed values and the official protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest

from densecal.errors import DensecalInputError
from densecal.evaluation import EvaluationOptions, Evaluator, evaluate_maps, official_quantise


def _half_maps() -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((4, 4), np.float32)
    gt[:2] = 1.0
    pred = np.where(gt > 0, 0.75, 0.25).astype(np.float32)
    return pred, gt


def test_hand_computed_result() -> None:
    pred, gt = _half_maps()
    result = evaluate_maps([("a", pred, gt)], name="toy").result
    cal = result["calibration"]
    # every pixel: confidence max(q, 1-q) = 0.75, correct -> one bin (0.7, 0.8] with acc 1.
    assert cal["ece"] == pytest.approx(0.25, abs=1e-12)
    assert cal["mce"] == pytest.approx(0.25, abs=1e-12)
    assert cal["oe"] == pytest.approx(0.0, abs=1e-12)
    assert cal["accuracy"] == pytest.approx(1.0)
    assert cal["brier"] == pytest.approx(0.0625, abs=1e-12)
    assert cal["nll"] == pytest.approx(-math.log(0.75), abs=1e-6)
    seg = result["segmentation"]
    assert seg["mae"] == pytest.approx(0.25, abs=1e-7)
    assert seg["dice"] == pytest.approx(1.0) and seg["iou"] == pytest.approx(1.0)
    assert result["dataset"] == {"name": "toy", "n_images": 1, "n_pixels": 16}
    assert result["protocol"] == {"n_bins": 10, "confidence": "top-label", "threshold": 0.5,
                                  "aggregate": "pooled", "protocol": "raw", "target": "hard"}
    assert result["reliability"]["count"][7] == 16
    assert sum(result["reliability"]["count"]) == 16


def test_streaming_equals_pooled_single_pass() -> None:
    rng = np.random.default_rng(0)
    maps = [(f"m{i}", rng.random((8, 8)).astype(np.float32),
             (rng.random((8, 8)) > 0.5).astype(np.float32)) for i in range(5)]
    whole = evaluate_maps(maps).result["calibration"]
    big_pred = np.concatenate([m[1] for m in maps], axis=0)
    big_gt = np.concatenate([m[2] for m in maps], axis=0)
    one = evaluate_maps([("all", big_pred, big_gt)]).result["calibration"]
    for key in ("ece", "oe", "mce", "brier", "nll", "accuracy"):
        assert whole[key] == pytest.approx(one[key], abs=1e-12)


@pytest.mark.parametrize("options", [
    EvaluationOptions(), EvaluationOptions(confidence="positive", aggregate="per-image"),
    EvaluationOptions(target="soft"), EvaluationOptions(protocol="official")])
def test_8bit_levels_equal_their_float_maps(options: EvaluationOptions) -> None:
    # uint8 levels v (the 256 x 2 histogram path, bool targets) give the numbers of the float32
    # maps v / 255 with float targets (the general path), image rows and dataset alike: counts
    # exactly, sums up to float64 summation order
    rng = np.random.default_rng(3)
    maps = []
    for i in range(4):
        levels = rng.integers(0, 256, (9, 11)).astype(np.uint8)
        gt = rng.choice(np.array([0.0, 1.0, 0.4, 0.6], np.float32), size=(9, 11))
        maps.append((f"m{i}", levels, gt))
    as_levels = evaluate_maps(maps, options)
    as_float = evaluate_maps([(n, (v / 255.0).astype(np.float32), g) for n, v, g in maps],
                             options)
    assert as_levels.result["calibration"] == pytest.approx(as_float.result["calibration"],
                                                            rel=1e-13, abs=1e-15, nan_ok=True)
    reliability = as_levels.result["reliability"]
    assert reliability["count"] == as_float.result["reliability"]["count"]
    for key, values in reliability.items():
        assert values == pytest.approx(as_float.result["reliability"][key], rel=1e-13, abs=1e-15,
                                       nan_ok=True)
    assert as_levels.result["segmentation"] == as_float.result["segmentation"]
    for row, other in zip(as_levels.per_image, as_float.per_image, strict=True):
        assert row.pop("name") == other.pop("name")
        assert row == pytest.approx(other, rel=1e-13, abs=1e-15)


def test_hard_target_8bit_takes_the_histogram_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from densecal.metrics.functional._calibration import binary_kernel as _pixels

    calls: list[str] = []
    original = _pixels.code_statistics
    monkeypatch.setattr(_pixels, "code_statistics",
                        lambda *a, **k: calls.append("codes") or original(*a, **k))
    evaluator = Evaluator(EvaluationOptions())
    evaluator.add("a", np.array([[0, 200]], np.uint8), np.array([[0.0, 1.0]], np.float32))
    assert calls  # the uint8 levels reached the exact histogram path


def test_official_quantise_min_max_then_8_bit() -> None:
    out = official_quantise(np.array([[0.25, 0.5, 0.75]], np.float32))
    # (x - 0.25) / 0.5 = 0, 0.5, 1 exactly -> round(127.5) = 128 (half to even, as cv2)
    np.testing.assert_array_equal(out * 255.0, np.array([[0.0, 128.0, 255.0]], np.float32))
    # a constant map: (p - min) = 0 over 1e-8, all zeros (confidence 1, background)
    assert not official_quantise(np.full((2, 2), 0.1, np.float32)).any()


def test_official_protocol_counts_soft_ground_truth_wrong() -> None:
    pred, gt = _half_maps()
    gt[0, 0] = 0.6  # a soft pixel that is "foreground" under the hard rule
    raw = evaluate_maps([("a", pred, gt)]).result["calibration"]["accuracy"]
    official = evaluate_maps([("a", pred, gt)], EvaluationOptions(protocol="official"))
    assert raw == pytest.approx(1.0)
    assert official.result["calibration"]["accuracy"] == pytest.approx(15 / 16)
    assert official.result["protocol"]["target"] == "strict"


@pytest.mark.parametrize(("pred", "message"), [
    (np.zeros((3, 3), np.float32), "does not match ground truth size"),
    (np.full((4, 4), np.nan, np.float32), "NaN or Inf"),
    (np.full((4, 4), 1.5, np.float32), r"outside \[0, 1\]"),
])
def test_bad_maps_name_the_image(pred: np.ndarray, message: str) -> None:
    with pytest.raises(DensecalInputError, match=f"img7: .*{message}"):
        Evaluator().add("img7", pred, np.zeros((4, 4), np.float32))


def test_no_images_is_an_input_error() -> None:
    with pytest.raises(DensecalInputError, match="no images"):
        Evaluator(name="empty").evaluation()


def test_bad_protocol_option() -> None:
    with pytest.raises(DensecalInputError, match="--protocol"):
        EvaluationOptions(protocol="matlab")


def test_a_map_larger_than_the_free_memory_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from densecal.evaluation import binary

    calls: list[int] = []

    def free() -> int:
        calls.append(1)
        return 1 << 30

    monkeypatch.setattr(binary, "_available_memory", free)
    small = np.zeros((64, 64), np.float32)
    binary.Evaluator().add("small", small, small)
    assert calls == []  # maps below 4 Mpx are not checked
    big = np.zeros((4000, 4000), np.float32)
    with pytest.raises(DensecalInputError, match=r"^big: a 4000x4000 map needs about 1\.5 GiB "
                                                 r"to evaluate \(100 bytes per pixel\), 1\.0 "
                                                 r"GiB are free"):
        binary.Evaluator().add("big", big, big)
    monkeypatch.setattr(binary, "_available_memory", lambda: None)  # not Linux: not checked
    binary.check_memory("big", big.size, big.shape)
