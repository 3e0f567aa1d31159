"""``benchmarks/overmap_audit.py``: hand cases of its measures and a ``--quick`` end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from _benchmark_scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "overmap_audit.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script(SCRIPT, "bench_overmap_audit")


def test_mask_quality_by_kind(bench: ModuleType) -> None:
    full = np.zeros((4, 4), bool)
    full[:2] = True                                # 8 pixels
    half = np.zeros((4, 4), bool)
    half[:1] = True                                # 4 of them
    empty = np.zeros((4, 4), bool)
    q = bench.mask_quality([half, empty, full, empty], [full, full, empty, empty],
                           ["clean", "clean", "no_garment", "no_garment"])
    assert q["clean"] == {"n": 2, "iou": pytest.approx(0.25), "empty_rate": 0.5,
                          "area": pytest.approx(0.125)}
    # a predicted blob on an empty truth has IoU 0; two empty masks count as IoU 1
    assert q["no_garment"] == {"n": 2, "iou": 0.5, "empty_rate": 0.5,
                               "area": pytest.approx(0.25)}


def test_audit_precision_targets(bench: ModuleType, tmp_path: Path) -> None:
    order = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
    kinds = {"a": "no_garment", "b": "clean", "c": "tiny_garment", "d": "wrong_label",
             "e": "no_garment", "f": "clean", "g": "clean", "h": "clean", "i": "wrong_label",
             "j": "clean"}
    audit = tmp_path / "audit.csv"
    audit.write_text("rank,name\n" + "".join(f"{i + 1},{n}\n" for i, n in enumerate(order)))
    p = bench.audit_precision(audit, kinds)
    # attention = {a, c, e}: k = 3, the first three are a, b, c
    assert p["attention"] == {"k": 3, "precision": pytest.approx(2 / 3), "chance": 0.3,
                              "found_by_kind": {"clean": 1, "tiny_garment": 1, "no_garment": 1},
                              "recall_by_kind": {"tiny_garment": 1.0, "no_garment": 0.5}}
    assert p["wrong_label"]["k"] == 2 and p["wrong_label"]["precision"] == 0.0   # a, b
    assert p["all"]["k"] == 5 and p["all"]["precision"] == pytest.approx(4 / 5)
    assert p["all"]["recall_by_kind"] == {"wrong_label": 0.5, "tiny_garment": 1.0,
                                          "no_garment": 1.0}
    assert set(p) == {"attention", "wrong_label", "all"}
    del kinds["c"]
    kinds["c"] = "clean"
    assert bench.audit_precision(audit, kinds)["attention"]["recall_by_kind"] == \
        {"no_garment": 0.5}


def test_score_intervals_hold_the_point_estimates(bench: ModuleType) -> None:
    rng = np.random.default_rng(0)
    correct = rng.random(200) < 0.7
    test = {"correct": correct, "msp": np.where(correct, 0.8, 0.6) + 0.1 * rng.random(200),
            "overmap": rng.random(200)}
    s = bench.score_intervals(test, 200, 0)
    assert s["auroc"]["msp"]["value"] == 1.0          # MSP separates perfectly
    assert s["auroc"]["msp"]["ci95"] == [1.0, 1.0]
    assert abs(s["auroc"]["overmap"]["value"] - 0.5) < 0.15
    for key in ("auroc", "aurc"):
        for stats in s[key].values():
            lo, hi = stats["ci95"]
            assert lo <= stats["value"] <= hi or abs(stats["value"] - lo) < 0.02


def test_quick_run(bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                   ) -> None:
    out = tmp_path / "out"
    result = bench.main(["--quick", "--out", str(out)])
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "overmap_audit.json").read_text())
    assert (out / "overmap_audit.md").read_text().startswith("# Over-MAP audit")
    n_train = result["setup"]["data"]["n_train"]
    reasons = result["setup"]["data"]["misleading_train_images"]
    assert sum(q["n"] for kind, q in result["segmenter"].items()
               if kind != "test_clean") == n_train
    for masks in ("learned", "gt"):
        audit = result["audit_precision_at_k"][masks]
        assert audit["all"]["k"] == sum(reasons.values()) == round(n_train * 0.2)
        for row in audit.values():
            assert sum(row["found_by_kind"].values()) == row["k"]
    retrain = result["retrain"]
    assert retrain["k"] == sum(reasons.values())
    assert sum(retrain["removed_by_kind"].values()) == retrain["k"]
    for condition in ("full", "bottom_k", "random_k"):
        assert retrain[condition]["n"] == 2 and len(retrain[condition]["per_seed"]) == 2
    assert retrain["bottom_minus_random"]["mean"] == pytest.approx(
        retrain["bottom_k"]["mean"] - retrain["random_k"]["mean"])
    assert result["test_accuracy"] == retrain["full"]["per_seed"][0]
    # the removed subsets really lack k images
    from densecal.data.classification import read_classification_folder
    work = out / "work"
    assert len(read_classification_folder(work / "subsets" / "bottom_k").names) == \
        n_train - retrain["k"]
    # a rerun resumes every finished run and gives the same numbers
    again = bench.main(["--quick", "--out", str(out)])
    capsys.readouterr()
    assert again["retrain"]["bottom_k"] == retrain["bottom_k"]
