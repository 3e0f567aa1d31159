"""``benchmarks/aslp_official.py``: densecal's ``--protocol official`` equals the official ASLP
pipeline (``test()``'s 8-bit maps, then ``ECE.py``) on maps with a constant and a tiny-range map,
and the recipe's learning rate equals the official loop's."""

from __future__ import annotations

import numpy as np
import pytest

from _benchmark_scripts import BENCH_DIR, load_script
from densecal.evaluation.binary import official_quantise

#: Maps and the 8-bit levels NumPy 1.26.4 gives for the official ``test()`` expression
#: ``255 * (res - res.min()) / (res.max() - res.min() + 1e-8)`` then OpenCV's rounding
#: (computed once in a NumPy 1.26 environment): tiny ranges are not stretched to 255, 127.4999
#: in float32 is level 127, a constant map is all zeros.
NUMPY1_LEVELS = [
    ([0.3, 0.300001, 0.3000005, 0.3000015], [0, 167, 81, 253]),
    ([0.2, 0.25, 0.4, 0.6], [0, 32, 127, 255]),
    ([1e-7, 2e-7, 3.5e-7, 4e-7], [0, 82, 206, 247]),
    ([0.5, 0.5, 0.5, 0.5], [0, 0, 0, 0]),
]


@pytest.mark.parametrize(("values", "levels"), NUMPY1_LEVELS)
def test_official_quantise_equals_numpy1_official_expression(values, levels) -> None:
    out = official_quantise(np.array([values], np.float32))
    assert np.rint(out * 255).astype(int).tolist() == [levels]
    assert out.dtype == np.float32 and np.array_equal(out, np.float32(np.array([levels]) / 255.0))


def test_half_way_levels_round_to_even() -> None:
    # 0.5 in a map spanning [0, 1]: 255 * 0.5 / float32(1 + 1e-8) = 127.5 exactly -> 128 (even)
    out = official_quantise(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert np.rint(out * 255).astype(int).tolist() == [[0, 128, 255]]


def test_official_protocol_matches_the_official_pipeline() -> None:
    bench = load_script(BENCH_DIR / "aslp_official.py", "aslp_official_bench")
    result = bench.main(["--n-maps", "15", "--seed", "2"])
    protocol = result["protocol"]
    assert protocol["largest_difference"] <= 2e-6
    assert protocol["tiny_range_map_top_level"] == 254
    # the constant map zeroed (official) moves the numbers visibly against keeping its value
    assert abs(protocol["constant_map_quantised_not_zeroed"]["ece"]
               - protocol["official"]["ece"]) > 1e-3
    lr = result["lr_factor"]
    assert lr["largest_difference"] < 1e-15
    assert lr["densecal_recipe_official"][29] == pytest.approx(0.214639, abs=1e-6)
