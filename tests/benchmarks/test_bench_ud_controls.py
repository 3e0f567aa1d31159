"""``benchmarks/ud_controls.py``: the measures on hand cases and a tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from _benchmark_scripts import BENCH_DIR, load_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script(BENCH_DIR / "ud_controls.py", "ud_controls_bench")


def test_measures_hand_case(bench: ModuleType) -> None:
    """Two classes, three images (2 = difficult): the difficult label of image 0 is predicted
    (FP rate 1/1); class 0 is difficult elsewhere, so image 1's absent class 0 counts, and it
    is predicted (1/2 with image 2's)."""
    pred = {"probs": np.array([[0.9, 0.8], [0.7, 0.2], [0.1, 0.6]]),
            "labels": np.array([[2, 1], [0, 0], [0, 1]]), "shares": np.zeros((3, 2))}
    values = bench.measures(pred)
    assert values["difficult_fp_rate"] == 1.0
    assert values["fp_rate_elsewhere"] == 0.5
    # ML-GCN counting: predictions > 0.5 are (0,0) difficult -> FP, (0,1) TP, (1,0) FP,
    # (2,1) TP: OP = 2 / 4
    assert values["op"] == pytest.approx(0.5)


def test_branch_diagnostic_hand_case(bench: ModuleType) -> None:
    # image 0: easy label 1 share 0.6 * 2, difficult label 0 share 0.4 * 2; image 1 has no
    # difficult label and is left out
    pred = {"labels": np.array([[2, 1, 0], [1, 0, 0]]),
            "shares": np.array([[0.4, 0.6, 0.0], [1.0, 0.0, 0.0]]),
            "probs": np.zeros((2, 3))}
    d = bench.branch_diagnostic(pred)
    assert (d["easy_share"], d["difficult_share"]) == pytest.approx((1.2, 0.8))
    assert d["teacher_branch_auroc"] == 1.0 and (d["easy_n"], d["difficult_n"]) == (1, 1)


def test_quick_run(bench: ModuleType, tmp_path: Path) -> None:
    result = bench.main(["--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "ud_controls.json").read_text())
    for model in ("teacher", "gt", "kd", "pdd", "ud", "ud_mean"):
        assert set(saved[model]) == set(bench.MEASURES)
    assert saved["gt"]["map"]["n"] == 2 and saved["teacher"]["map"]["n"] == 1
    assert 0.0 <= result["teacher_branch_auroc"] <= 1.0
    assert "| ud_mean |" in (tmp_path / "ud_controls.md").read_text()
    wall = saved["training_wall"]["gt"]
    assert (wall["runs"], wall["untimed"]) == (2, 0) and wall["seconds"] > 0


def _stats(**means: tuple[float, float]) -> dict[str, dict[str, dict[str, float]]]:
    """``model=(map_hard, difficult_fp_rate)``, every sd 0.01."""
    return {m: {"map_hard": {"mean": h, "std": 0.01}, "difficult_fp_rate": {"mean": f, "std": 0.01}}
            for m, (h, f) in means.items()}


@pytest.mark.parametrize(("means", "answer"), [
    # ud beats kd on mAP-hard (+0.05 > yard 0.014), FP rate the same
    ({"gt": (0.40, 0.30), "kd": (0.45, 0.30), "pdd": (0.46, 0.30), "ud": (0.50, 0.30)},
     "uncertainty distillation"),
    # kd beats gt on both, ud within kd's noise
    ({"gt": (0.40, 0.30), "kd": (0.45, 0.25), "pdd": (0.45, 0.25), "ud": (0.46, 0.25)},
     "distillation as such"),
    # ud beats kd on mAP-hard but is worse on the FP rate: not counted as beating it
    ({"gt": (0.40, 0.30), "kd": (0.41, 0.30), "pdd": (0.41, 0.30), "ud": (0.45, 0.35)},
     "not resolvable"),
    ({"gt": (0.40, 0.30), "kd": (0.40, 0.30), "pdd": (0.41, 0.30), "ud": (0.405, 0.305)},
     "no gain"),
])
def test_verdict_rule(bench: ModuleType, means: dict, answer: str) -> None:
    v = bench.verdict(_stats(**means))
    assert v["answer"] == answer
    first = v["comparisons"][0]  # kd - gt on mAP-hard
    assert (first["a"], first["b"], first["key"]) == ("kd", "gt", "map_hard")
    assert first["yard"] == pytest.approx(0.01 * 2 ** 0.5)


def test_compare_needs_the_bootstrap_interval_too(bench: ModuleType) -> None:
    """ud - kd on the FP rate is +0.05 (worse, beyond the seed yard 0.014); it stays "worse"
    only while the paired interval over test images lies above 0."""
    stats = _stats(kd=(0.45, 0.25), ud=(0.45, 0.30))
    assert bench.compare(stats, "ud", "kd", "difficult_fp_rate")["word"] == "worse"
    stats["paired_bootstrap"] = {"ud-kd": {"difficult_fp_rate": {"diff": 0.05, "lo": 0.01,
                                                                 "hi": 0.09}}}
    assert bench.compare(stats, "ud", "kd", "difficult_fp_rate")["word"] == "worse"
    stats["paired_bootstrap"]["ud-kd"]["difficult_fp_rate"]["lo"] = -0.01
    assert bench.compare(stats, "ud", "kd", "difficult_fp_rate")["word"] == "same"


def test_paired_bootstrap_hand_case(bench: ModuleType) -> None:
    """Two images, one difficult label each; model a predicts both, b neither: every draw
    gives a - b = 1 on the FP rate (interval [1, 1])."""
    labels = np.array([[2, 1], [1, 2]])
    yes = {"probs": np.array([[0.9, 0.9], [0.9, 0.9]]), "labels": labels}
    no = {"probs": np.array([[0.1, 0.9], [0.9, 0.1]]), "labels": labels}
    preds = {m: [no] for m in ("gt", "kd", "pdd", "ud")} | {"ud": [yes, yes]}
    out = bench.paired_bootstrap(preds, n_boot=50)
    assert out["ud-kd"]["difficult_fp_rate"] == {"diff": 1.0, "lo": 1.0, "hi": 1.0}
    assert out["kd-gt"]["difficult_fp_rate"] == {"diff": 0.0, "lo": 0.0, "hi": 0.0}
