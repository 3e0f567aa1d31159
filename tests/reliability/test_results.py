"""Hostile input that is not an error: the run succeeds and its result is still right.

Each case checks exit code 0, strict JSON (no NaN/Infinity tokens), every value in the schema's
range, valid UTF-8 text files, and that no file of an earlier result survives beside the new one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densecal.atomic import OUTPUT_MARKER
from densecal.cli.main import main
from densecal.evaluation.schema import validate_evaluate_result


def _run(argv: list[str]) -> None:
    try:
        main(argv)
    except SystemExit as exc:  # main() returns on success, exits otherwise
        pytest.fail(f"exit {exc.code}")


def _strict_json(path: Path) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"{path}: non-standard JSON token {token}")

    return json.loads(path.read_bytes().decode("utf-8"), parse_constant=refuse)


def _pairs(root: Path, names: list[bytes], shape: tuple[int, int], truth: float = 0.0,
           pred: float = 0.3) -> tuple[Path, Path]:
    pred_dir, gt_dir = root / "pred", root / "gt"
    pred_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    for name in names:
        stem = os.fsdecode(name)
        np.save(pred_dir / f"{stem}.npy", np.full(shape, pred, np.float32))
        Image.fromarray(np.full(shape, 255 * truth, np.uint8)).save(gt_dir / f"{stem}.png")
    return pred_dir, gt_dir


def test_non_utf8_file_names_are_written_escaped(tmp_path: Path) -> None:
    pred, gt = _pairs(tmp_path, [b"caf\xe9", b"ok"], (8, 8), truth=1.0)
    out = tmp_path / "out"
    _run(["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(out)])
    rows = (out / "per_image.csv").read_bytes().decode("utf-8").splitlines()
    assert [r.split(",")[0] for r in rows] == ["name", "caf\\xe9", "ok"]
    validate_evaluate_result(_strict_json(out / "metrics.json"))
    (out / "report.md").read_bytes().decode("utf-8")


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2), (8, 8)])
@pytest.mark.parametrize("truth", [0.0, 1.0])
@pytest.mark.parametrize("protocol", ["raw", "official"])
def test_degenerate_maps_give_an_in_range_result(shape: tuple[int, int], truth: float,
                                                  protocol: str, tmp_path: Path) -> None:
    # all-empty or all-full truth with constant maps: the reference E-measure reaches 64/63 on
    # 8x8 and 4.5e15 on 1x1; densecal's result must stay in the schema's range
    pred, gt = _pairs(tmp_path, [b"a", b"b"], shape, truth=truth, pred=truth)
    out = tmp_path / "out"
    _run(["evaluate", "--pred", str(pred), "--gt", str(gt), "--protocol", protocol,
          "--out", str(out)])
    result = _strict_json(out / "metrics.json")
    validate_evaluate_result(result)
    assert result["segmentation"]["max_e"] == 1.0


def test_a_new_result_leaves_no_file_of_the_earlier_one(tmp_path: Path) -> None:
    pred, gt = _pairs(tmp_path, [b"a", b"b"], (8, 8), truth=1.0, pred=0.8)
    out = tmp_path / "out"
    _run(["evaluate", "--pred", str(pred), "--gt", str(gt), "--ood", str(pred), "--out",
          str(out)])
    assert (out / "metrics_ood.json").is_file()
    _run(["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [OUTPUT_MARKER, "metrics.json", "per_image.csv", "reliability.png", "report.md",
         "risk_coverage.png"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt", "out", "pred"]


def test_predict_in_another_format_replaces_the_maps(tiny_checkpoint: Path,
                                                     tiny_demo: dict[str, Path],
                                                     tmp_path: Path) -> None:
    out = tmp_path / "maps"
    data = tiny_demo["test"]
    _run(["predict", "--checkpoint", str(tiny_checkpoint), "--data", str(data), "--out",
          str(out)])
    pngs = sorted(p.stem for p in out.glob("*.png"))
    _run(["predict", "--checkpoint", str(tiny_checkpoint), "--data", str(data), "--format",
          "npy", "--out", str(out)])
    assert list(out.glob("*.png")) == []  # no NAME.png beside the new NAME.npy
    assert sorted(p.stem for p in out.glob("*.npy")) == pngs
