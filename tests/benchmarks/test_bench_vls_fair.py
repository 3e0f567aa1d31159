"""``benchmarks/vls_fair.py``: the selection rule, the verdict wording, the target distances."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from _benchmark_scripts import BENCH_DIR, load_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script(BENCH_DIR / "vls_fair.py", "vls_fair_bench")


def test_selection_needs_ce_dice_then_lowest_ece(bench: ModuleType) -> None:
    chosen = bench.select({
        "ce": [({}, 0.80, 0.05)],
        "ls": [({"eps": 0.05}, 0.80, 0.04), ({"eps": 0.2}, 0.79, 0.01)],  # 0.2: Dice too low
        "svls": [({"svls_sigma": 1.0}, 0.70, 0.02), ({"svls_sigma": 2.0}, 0.75, 0.03)]})
    assert chosen["ls"] == {"setting": {"eps": 0.05}, "val_dice": 0.80, "val_ece": 0.04,
                            "qualified": True}
    assert chosen["svls"]["setting"] == {"svls_sigma": 2.0} and not chosen["svls"]["qualified"]


def test_verdict_uses_both_sds(bench: ModuleType) -> None:
    row = lambda m, s: {"ece": {"mean": m, "sd": s}, "soft_ece": {"mean": m, "sd": s}}  # noqa: E731
    text = bench.verdict({"vls": row(0.02, 0.003), "ce": row(0.05, 0.004),
                          "svls": row(0.024, 0.004)})
    assert "VLS 2.00 vs ce 5.00 (lower)" in text["vls_vs_ce"]
    assert "(not separable)" in text["vls_vs_svls"]  # 0.4 points < hypot(0.3, 0.4) points


def test_target_distance_hand_case(bench: ModuleType, tmp_path: Path) -> None:
    """One 1x2 image: pixel 0 ambiguous (truth 0.5/0.5/0, label 0), pixel 1 certain. LS eps 0.3
    gives (0.8, 0.1, 0.1) at pixel 0: mass off 0.2, TV 0.5 * (0.3 + 0.4 + 0.1) = 0.4."""
    root = tmp_path / "data" / "train"
    for sub in ("images", "masks", "soft"):
        (root / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((1, 2), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.array([[0, 1]], np.uint8)).save(root / "masks" / "a.png")
    np.save(root / "soft" / "a.npy", np.array([[[0.5, 0.0]], [[0.5, 1.0]], [[0.0, 0.0]]],
                                              np.float32))
    fake = type("B", (), {"data": tmp_path / "data"})()
    d = bench.target_distance(fake, "ls", {"eps": 0.3}, None)
    assert d["pixels"] == 1
    assert d["mass_off_label"] == pytest.approx(0.2)
    assert d["total_variation"] == pytest.approx(0.4)
    ce = bench.target_distance(fake, "ce", {}, None)
    assert (ce["mass_off_label"], ce["total_variation"]) == pytest.approx((0.0, 0.5))



def test_state_ece_hand_case(bench: ModuleType) -> None:
    """Two bins: 3 pixels at mean confidence 0.9 with 2 correct, 1 at 0.6 correct:
    (|2.7 - 2| + |0.6 - 1|) / 4 = 0.275."""
    states = np.array([[1.0, 3.0], [0.6, 2.7], [1.0, 2.0]])  # rows: count, conf, correct
    assert bench.state_ece(states) == pytest.approx(0.275)


def test_paired_bootstrap_and_verdict_need_the_interval(bench: ModuleType) -> None:
    """Every image: VLS ECE 0.1 below CE's and equal to SVLS's, so every draw agrees."""
    one = np.zeros((4, 2, 3, 2))
    one[:, :, 0, 1] = 10.0  # 10 pixels per image in the top bin
    one[:, :, 1, 1] = 9.0  # confidence 0.9
    vls, ce = one.copy(), one.copy()
    vls[:, :, 2, 1] = 8.0  # accuracy 0.8: ECE 0.1
    ce[:, :, 2, 1] = 7.0  # accuracy 0.7: ECE 0.2
    out = bench.paired_bootstrap({"vls": [vls], "ce": [ce], "svls": [vls]}, n_boot=20)
    assert out["vls-ce"]["ece"] == pytest.approx({"diff": -0.1, "lo": -0.1, "hi": -0.1})
    assert out["vls-svls"]["soft_ece"] == {"diff": 0.0, "lo": 0.0, "hi": 0.0}
    row = {"ece": {"mean": 0.1, "sd": 0.01}, "soft_ece": {"mean": 0.1, "sd": 0.01}}
    worse = {"ece": {"mean": 0.2, "sd": 0.01}, "soft_ece": {"mean": 0.2, "sd": 0.01}}
    table = {"vls": row, "ce": worse, "svls": worse}
    assert "(lower, 95 % CI" in bench.verdict(table, out)["vls_vs_ce"]
    # the seeds separate VLS from SVLS, the test images do not (interval [0, 0])
    assert "(not separable, 95 % CI" in bench.verdict(table, out)["vls_vs_svls"]
