"""``benchmarks/car_scenes.py``: the pooled interval (hand values) and a tiny end-to-end run
(data with base masks, F, CAR and the ablation on the oracle F, the table)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _benchmark_scripts import BENCH_DIR, load_script


def test_pooled_ci_hand_values() -> None:
    bench = load_script(BENCH_DIR / "car_scenes.py", "car_scenes_bench")
    # two images: 3 of 10 and 1 of 10 twin picks -> pooled 0.2 against p = 0.25
    error, ci = bench.pooled_ci(np.array([3.0, 1.0]), np.array([10.0, 10.0]), 0.25)
    assert error == pytest.approx(0.05)
    # resampling two images gives the pooled shares 0.1, 0.2 and 0.3 only
    assert ci[0] >= 0.05 - 1e-12 and ci[1] <= 0.15 + 1e-12


def test_quick_run(tmp_path: Path) -> None:
    bench = load_script(BENCH_DIR / "car_scenes.py", "car_scenes_bench")
    result = bench.main(["--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "car_scenes.json").read_text())
    assert saved["car"]["test_images"] == 4 == result["no_cal"]["test_images"]
    for row in saved["car"]["per_class"].values():
        assert 0.0 <= row["argmax_share"] <= 1.0
        assert row["g_minus_f_ci95"][0] <= row["g_minus_f_ci95"][1]
        assert row["g_minus_f"] == pytest.approx(abs(row["argmax_share"] - row["p"]))
        assert row["class_share"] + row["argmax_share"] + row["background_share"] <= 1 + 1e-9
    for row in saved["calibration_net"].values():
        # F's twin share is its class-or-twin mass times the conditional twin share
        assert row["f_share"] == pytest.approx(row["f_pair_mass"] * row["f_conditional_share"])
        assert 0.0 <= row["f_pair_mass"] <= 1.0 + 1e-9
        assert row["f_conditional_minus_p"] == pytest.approx(
            abs(row["f_conditional_share"] - row["p"]))
        lo, hi = row["f_conditional_minus_p_ci95"]
        assert lo <= hi
    text = (tmp_path / "car_scenes.md").read_text()
    assert "| variant | GED |" in text and "conditional share" in text
    assert "class / twin / background" in text
