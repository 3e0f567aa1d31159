"""``densecal demo --fast``: the main job end to end on the bundled scenes (the full demo is
marked slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from densecal.cli.main import main
from densecal.evaluation import validate_evaluate_result


def _check_demo_folder(out: Path) -> dict:
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["schema"] == "densecal.demo/1"
    assert set(metrics["runs"]) == {"bce", "aslp"}
    for splits in metrics["runs"].values():
        assert set(splits) == {"test", "ood"}
        for result in splits.values():
            validate_evaluate_result(result)
    assert metrics["runs"]["bce"]["ood"]["dataset"]["n_images"] == metrics["data"]["n_ood"]
    report = (out / "report" / "report.md").read_text()
    for fragment in ("| BCE", "| ASLP", "ECE %", "reliability_test.png", "examples.png"):
        assert fragment in report
    for name in ("reliability_test.png", "reliability_ood.png", "examples.png"):
        assert (out / "report" / name).stat().st_size > 10_000
    alpha = (out / "runs" / "aslp" / "alpha.csv").read_text().splitlines()
    assert alpha[0] == "name,alpha,updates" and len(alpha) == metrics["data"]["n_train"] + 1
    return metrics


def test_fast_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "densecal-demo"
    main(["demo", "--fast", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "BCE test: ECE" in printed and "ASLP  ood: ECE" in printed
    metrics = _check_demo_folder(out)
    # the ASLP run adapted alpha after its warm-up: some image has alpha > 0
    alphas = [float(line.split(",")[1]) for line in
              (out / "runs" / "aslp" / "alpha.csv").read_text().splitlines()[1:]]
    assert max(alphas) > 0.0
    summary = metrics["aslp_alpha"]
    assert summary["max"] == pytest.approx(max(alphas)) and summary["n_images"] == len(alphas)
    # 6 epochs are too few for a coin to come up: identical rows, and the report says why
    report = (out / "report" / "report.md").read_text()
    assert metrics["runs"]["bce"]["test"]["calibration"] == \
        metrics["runs"]["aslp"]["test"]["calibration"]
    assert "Why the BCE and ASLP rows are identical" in report
    assert f"largest {max(alphas):.4f}" in report
    # re-running into the same folder reuses the finished runs and rewrites the same numbers
    main(["demo", "--fast", "--out", str(out)])
    again = json.loads((out / "report" / "metrics.json").read_text())
    assert again["runs"] == metrics["runs"]


@pytest.mark.slow
def test_full_demo(tmp_path: Path) -> None:
    main(["demo", "--out", str(tmp_path / "demo")])
    _check_demo_folder(tmp_path / "demo")
