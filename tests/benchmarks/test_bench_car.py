"""Smoke runs of benchmarks/car_ambiguity.py and benchmarks/car_toy.py (``--quick``), plus the
scoring helpers of car_ambiguity on hand-computed cases."""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from densecal.data.synthetic.ambiguity import DEFAULT_SPEC, AmbiguitySpec

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import car_ambiguity  # noqa: E402
import car_toy  # noqa: E402


def test_quota_tiling_follows_probabilities() -> None:
    # 16 slots for modes 9/17, 8/17: quotas 8.47 and 7.53 -> 8 and 8 (0.53 > 0.47 gets the rest)
    tiled = car_ambiguity.quota_tiling(np.array([9 / 17, 8 / 17]), 16)
    assert np.bincount(tiled).tolist() == [8, 8]
    # equal modes dividing N: exact replication, like hungarian_matched_iou's cyclic tiling
    assert np.bincount(car_ambiguity.quota_tiling(np.full(4, 0.25), 16)).tolist() == [4] * 4
    # more modes than slots: the most probable get one slot each
    probs = np.array([0.05] * 4 + [0.2] * 4)
    assert car_ambiguity.quota_tiling(probs, 4).tolist() == [4, 5, 6, 7]
    assert len(car_ambiguity.quota_tiling(np.array([0.7, 0.2, 0.1]), 16)) == 16


def test_score_image_on_a_hand_case() -> None:
    spec = AmbiguitySpec(classes=(1,), twins=(2,), probabilities=(0.25,), num_classes=3)
    base = np.array([[1, 1], [0, 0]])
    # 4 samples: 1 picks the twin everywhere, 3 keep class 1 -> frequency 1/4, error 0
    samples = np.array([[[2, 2], [0, 0]]] + [[[1, 1], [0, 0]]] * 3, dtype=np.uint8)
    f_probs = np.zeros((3, 2, 2))
    f_probs[0], f_probs[1], f_probs[2] = 0.25, 0.5, 0.25  # F's twin share: 0.25 / 0.75
    out = car_ambiguity.score_image(samples, f_probs, base, spec)
    assert out["flip_frequency"] == {1: 0.25}
    assert out["flip_frequency_unconditional"] == {1: 0.25}
    assert out["f_flip_probability"] == {1: pytest.approx(1 / 3)}
    # modes: unflipped (0.75) and flipped (0.25); samples reproduce that law exactly, so the
    # weighted D^2_GED is 2 E[d(S,Y)] - E[d(S,S')] - E[d(Y,Y')] = 2*0.375 - 0.375 - 0.375 = 0
    assert out["ged"] == pytest.approx(0.0, abs=1e-12)
    assert out["hm_iou"] == 1.0  # quota tiling: 3 unflipped + 1 flipped slots
    assert out["hm_iou_cyclic"] == 0.75  # cyclic: 2 + 2 slots, one pair mismatched (IoU 0)
    assert out["diversity"] == pytest.approx(2 * 3 / 16)
    # a sample reading class 1 as background makes no flip choice: left out of the
    # conditional frequency (1 twin of 3 choices), counted in the unconditional (1 of 4)
    samples[1] = [[0, 0], [0, 0]]
    out = car_ambiguity.score_image(samples, f_probs, base, spec)
    assert out["flip_frequency"] == {1: pytest.approx(1 / 3)}
    assert out["flip_frequency_unconditional"] == {1: 0.25}
    f_probs[1:] = 0.0  # no class-or-twin probability: F's share is undefined, left out
    assert car_ambiguity.score_image(samples, f_probs, base, spec)["f_flip_probability"] == {}


def test_evaluate_averages_over_images_with_the_class(tmp_path: Path) -> None:
    from PIL import Image

    spec = DEFAULT_SPEC
    masks = tmp_path / "data" / "test" / "masks"
    masks.mkdir(parents=True)
    samples = tmp_path / "samples"
    for name, base, twin_share in (("a", 1, 0.5), ("b", 1, 0.0), ("c", 3, 0.0)):
        label = np.zeros((4, 4), dtype=np.uint8)
        label[:2] = base
        Image.fromarray(label).save(masks / f"{name}.png")
        maps = np.repeat(label[None], 16, 0)
        maps[: int(16 * twin_share), :2] = 11 if base == 1 else base
        (samples / name).mkdir(parents=True)
        np.save(samples / name / "samples.npy", maps)
        np.save(samples / name / "f.npy", np.zeros((16, 4, 4), dtype=np.float32))
    out = car_ambiguity.evaluate(samples, tmp_path / "data", spec)
    p1 = float(Fraction(8, 17))
    assert out["images_with_class"]["1"] == 2 and out["images_with_class"]["2"] == 0
    assert out["flip_frequency"]["1"] == 0.25
    # the error of the mean frequency, not the mean of the per-image errors
    assert out["flip_frequency_error"]["1"] == pytest.approx(abs(0.25 - p1))
    assert out["flip_frequency_error_unconditional"]["1"] == pytest.approx(abs(0.25 - p1))
    assert out["flip_frequency_error_per_image"]["1"] == pytest.approx(
        (abs(0.5 - p1) + abs(0.0 - p1)) / 2)
    assert out["flip_frequency_error"]["2"] is None
    assert out["flip_frequency_error_mean"] == out["flip_frequency_error"]["1"]
    # every sample reads class 1 as itself or the twin: conditional = unconditional here
    assert out["flip_frequency_unconditional"]["1"] == 0.25
    assert out["test_images"] == 3
    # images with class 1 have shares 0.5 and 0.0: every resampled mean is 0, 0.25 or 0.5
    low, high = out["flip_frequency_ci95"]["1"]
    assert 0.0 <= low <= 0.25 <= high <= 0.5
    assert out["flip_frequency_ci95"]["2"] is None


def test_mean_over_seeds_keeps_intervals() -> None:
    per_seed = [{"ci": {"1": [0.25, 0.5]}, "n": 3, "x": 0.5},
                {"ci": {"1": [0.75, 1.0]}, "n": 3, "x": 0.75}]
    # intervals averaged end by end, counts kept, numbers averaged
    assert car_ambiguity._mean_over_seeds(per_seed) == {"ci": {"1": [0.5, 0.75]}, "n": 3,
                                                        "x": 0.625}


def test_bootstrap_ci_hand_cases() -> None:
    assert car_ambiguity.bootstrap_ci([0.3] * 5) == [0.3, 0.3]
    low, high = car_ambiguity.bootstrap_ci([0.0, 1.0] * 50)
    # mean of 100 fair coins: sd 0.05, so the interval is about 0.5 +- 0.1
    assert 0.38 < low < 0.45 and 0.55 < high < 0.62


def _check_unit(value: object) -> None:
    assert value is None or (isinstance(value, float) and 0.0 <= value <= 1.0)


def test_car_ambiguity_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = car_ambiguity.main(["--quick", "--out", str(tmp_path)])
    printed = json.loads(capsys.readouterr().out)  # stdout holds exactly the JSON object
    assert printed == json.loads((tmp_path / "car_ambiguity.json").read_text())
    assert {"car", "no_cal", "setup", "machine"} <= set(result)
    for variant in ("car", "no_cal"):
        block = result[variant]
        assert {"flip_frequency_error", "ged", "hm_iou", "diversity"} <= set(block)
        assert set(block["flip_frequency_error"]) == {"1", "2", "5", "8", "9"}
        for value in block["flip_frequency_error"].values():
            _check_unit(value)
        assert any(v is not None for v in block["flip_frequency_error"].values())
        for key in ("hm_iou", "hm_iou_cyclic", "diversity"):
            _check_unit(block[key])
        assert -1e-9 <= block["ged"] <= 2.0
        assert block["test_images"] == 3 and len(block["per_seed"]) == 1
    assert result["setup"]["samples_per_image"] == 16
    assert len(list((tmp_path / "car_seed0_samples").glob("test_*"))) == 3


def test_car_toy_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = car_toy.main(["--quick", "--out", str(tmp_path), "--pis", "0.7", "--seeds", "2"])
    assert json.loads(capsys.readouterr().out) == result
    errors = {}
    for variant in ("car", "no_cal"):
        entry = result[variant]["0.7"]
        fractions = entry["per_seed"]
        assert entry["pi"] == 0.7 and len(fractions) == 2
        assert entry["upper_fraction"] == pytest.approx(sum(fractions) / 2)
        errors[variant] = [abs(f - 0.7) for f in fractions]
        assert entry["abs_error"] == pytest.approx(sum(errors[variant]) / 2)
        assert entry["collapsed"] == sum(1 for f in fractions if not 0.05 <= f <= 0.95)
    assert result["car_closer"]["0.7"] == sum(
        1 for a, b in zip(errors["car"], errors["no_cal"], strict=True) if a < b)
    png = (tmp_path / "car_toy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "car_toy.json").is_file()
