"""Smoke test of ``benchmarks/overmap.py --quick`` (tiny data, 1 epoch) and its evidence helpers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from _benchmark_scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "overmap.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script(SCRIPT, "bench_overmap")


def _fraction(value: object) -> bool:
    return isinstance(value, float) and 0.0 <= value <= 1.0


def test_quick_run_keys_values_and_resume(bench: ModuleType, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    result = bench.main(["--quick", "--out", str(out)])
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(result))
    assert json.loads((out / "overmap.json").read_text()) == printed
    assert {"setup", "machine", "test_accuracy", "accuracy_by_overlap_bin", "auroc", "aurc",
            "audit_precision_at_k", "accuracy_rises_with_overlap",
            "overmap_adds_to_msp"} <= set(result)
    assert _fraction(result["test_accuracy"])
    bins = result["accuracy_by_overlap_bin"]
    assert [b[0] for b in bins] == pytest.approx([i / 10 for i in range(10)])
    assert sum(b[1] for b in bins) == result["setup"]["data"]["n_test"] == 40
    for _, count, acc in bins:
        assert (acc is None) == (count == 0)
        assert acc is None or _fraction(acc)
    # accuracy over the bins, weighted by their counts, is the test accuracy
    weighted = sum(b[1] * b[2] for b in bins if b[1]) / 40
    assert weighted == pytest.approx(result["test_accuracy"])
    for key in ("auroc", "aurc"):
        assert set(result[key]) == {"overmap", "msp", "combined"}
        for value in result[key].values():
            assert value is None or _fraction(value)
    audit = result["audit_precision_at_k"]
    n_misleading = sum(result["setup"]["data"]["misleading_train_images"].values())
    assert audit["k"] == n_misleading == 4  # round(40 * 0.1)
    assert audit["precision"] in {0.0, 0.25, 0.5, 0.75, 1.0}
    assert sum(audit["found_by_reason"].values()) == round(audit["precision"] * 4)
    assert isinstance(result["accuracy_rises_with_overlap"], bool)
    adds = result["overmap_adds_to_msp_evidence"]
    assert result["overmap_adds_to_msp"] == (adds["auroc_gain"] > 0 and adds["aurc_reduction"] > 0)
    assert adds["auroc_gain"] == pytest.approx(result["auroc"]["combined"]
                                               - result["auroc"]["msp"])
    assert adds["aurc_reduction"] == pytest.approx(result["aurc"]["msp"]
                                                   - result["aurc"]["combined"])
    assert 0.0 <= result["setup"]["segmenter_test_mask_iou"] <= 1.0

    # resumable: the data and the finished runs are reused, the numbers do not change
    image = out / "work" / "data" / "train" / "images" / "train_0000.png"
    stamp = image.stat().st_mtime_ns
    ckpt = out / "work" / "classifier" / "checkpoints" / "last.ckpt"
    steps = torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]
    assert steps == 5  # 1 epoch of 40 images in batches of 8
    again = bench.main(["--quick", "--out", str(out)])
    capsys.readouterr()
    assert again["auroc"] == result["auroc"]
    assert again["audit_precision_at_k"] == audit
    assert len(list((out / "work" / "data" / "train" / "images").iterdir())) == 40
    assert image.stat().st_mtime_ns == stamp
    # the finished run is resumed, not trained again
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"] == steps


def test_rise_evidence_hand_cases(bench: ModuleType) -> None:
    bins = [[0.0, 12, 0.25], [0.1, 3, 0.0], [0.2, 10, 0.5], [0.3, 20, 0.75], [0.4, 0, None]]
    ev = bench.rise_evidence(bins, 10)
    assert ev["rises"] is True
    assert ev["bins_used"] == 3
    assert ev["spearman_rho"] == pytest.approx(1.0)
    assert ev["first_bin"] == [0.0, 12, 0.25] and ev["last_bin"] == [0.3, 20, 0.75]
    falling = bench.rise_evidence([[0.0, 10, 0.9], [0.5, 10, 0.6], [0.9, 10, 0.1]], 10)
    assert falling["rises"] is False and falling["spearman_rho"] == pytest.approx(-1.0)
    single = bench.rise_evidence(bins, 15)
    assert single["rises"] is False and single["bins_used"] == 1


def test_adds_evidence_hand_case(bench: ModuleType) -> None:
    # MSP ranks one wrong prediction first; the overlap pushes it to the bottom
    correct = np.array([True, True, False, False])
    msp = np.array([0.8, 0.6, 0.9, 0.5])
    om = np.array([1.0, 1.0, 0.25, 1.0])  # combined: 0.8, 0.6, 0.225, 0.5
    ev = bench.adds_evidence({"correct": correct, "msp": msp, "overmap": om}, 20, 0)
    # AUROC: msp 2/4 (0.8 and 0.6 beat 0.5, lose to 0.9); combined 4/4
    assert ev["auroc_gain"] == pytest.approx(0.5)
    # AURC: msp risks 1, 1/2, 1/3, 1/2 -> 7/12; combined 0, 0, 1/3, 1/2 -> 5/24
    assert ev["aurc_reduction"] == pytest.approx(7 / 12 - 5 / 24)
    assert ev["adds"] is True
    boot = ev["bootstrap"]
    assert boot["resamples"] <= 20
    assert boot["fraction_both_improve"] is None or 0.0 <= boot["fraction_both_improve"] <= 1.0
    assert not math.isnan(ev["auroc_gain"])
