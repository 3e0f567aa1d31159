"""Tests for densecal.report.writers and densecal.report.tables."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from densecal.errors import DensecalInputError
from densecal.evaluation import EVALUATE_SCHEMA, validate_evaluate_result
from densecal.report import (
    format_percent,
    format_value,
    markdown_table,
    metrics_table,
    to_jsonable,
    write_json,
    write_per_image_csv,
    write_report_md,
)

NAN = math.nan


def _result(ece: float = 0.03125, mae: float = 0.0625) -> dict:
    return {
        "schema": EVALUATE_SCHEMA,
        "dataset": {"name": "demo-test", "n_images": 4, "n_pixels": 1024},
        "protocol": {"n_bins": 4, "confidence": "top-label", "threshold": 0.5,
                     "aggregate": "pooled", "protocol": "raw", "target": "hard"},
        "calibration": {"ece": ece, "mce": 0.25, "oe": 0.015625, "ace": 0.0390625,
                        "brier": 0.046875, "nll": 1.5, "accuracy": 0.9375, "aurc": 0.0625,
                        "eaurc": 0.03125, "auroc": 0.75, "fpr95": 0.5},
        "segmentation": {"mae": mae, "max_f": 0.875, "mean_f": 0.75, "adaptive_f": 0.8125,
                         "max_e": 0.96875, "mean_e": 0.9, "s_measure": 0.84375,
                         "weighted_f": 0.8, "dice": 0.9, "iou": 0.8125},
        "reliability": {"bin_lower": [0.0, 0.25, 0.5, 0.75],
                        "bin_upper": [0.25, 0.5, 0.75, 1.0],
                        "count": [0, 0, 24, 1000],
                        "confidence": [NAN, NAN, 0.625, 0.9375],
                        "accuracy": [NAN, NAN, 0.5, 0.9375]},
    }


def _strict_load(text: str):
    def reject(token: str):
        raise AssertionError(f"invalid JSON token {token}")

    return json.loads(text, parse_constant=reject)


# --------------------------------------------------------------------------- JSON


def test_write_json_round_trip_nan_becomes_null(tmp_path: Path) -> None:
    path = tmp_path / "out" / "metrics.json"
    result = _result()
    write_json(path, result)
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and text.endswith("}\n")
    assert text.startswith('{\n  "schema": "densecal.evaluate/2",\n  "dataset": {')  # key order
    loaded = _strict_load(text)
    assert loaded["reliability"]["confidence"] == [None, None, 0.625, 0.9375]
    assert loaded["reliability"]["accuracy"] == [None, None, 0.5, 0.9375]
    expected = copy.deepcopy(result)
    expected["reliability"]["confidence"][:2] = [None, None]
    expected["reliability"]["accuracy"][:2] = [None, None]
    assert loaded == expected
    validate_evaluate_result(loaded)  # what was read back still follows the schema


def test_write_json_exact_text(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    write_json(path, {"b": np.int64(1), "a": np.array([0.5, np.nan]), "c": (np.float32(0.25),)})
    assert path.read_text() == (
        '{\n  "b": 1,\n  "a": [\n    0.5,\n    null\n  ],\n  "c": [\n    0.25\n  ]\n}\n'
    )


def test_to_jsonable_conversions() -> None:
    out = to_jsonable({
        "t": torch.tensor([[0.5, float("nan")], [float("inf"), 2.0]]),
        "s": torch.tensor(3),
        "b": np.bool_(True),
        "p": Path("a/b.png"),
        1: (np.float64(-np.inf), None, "x"),
    })
    assert out == {"t": [[0.5, None], [None, 2.0]], "s": 3, "b": True, "p": "a/b.png",
                   "1": [None, None, "x"]}
    assert type(out["s"]) is int and type(out["b"]) is bool
    with pytest.raises(TypeError, match="object"):
        to_jsonable({"ok": 1, "bad": object()})
    with pytest.raises(TypeError, match="key"):
        to_jsonable({(1, 2): 0})


def test_write_json_failure_keeps_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_json(path, {"v": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError, match="set"):
        write_json(path, {"ok": [1, 2, 3], "later": {"bad": {1, 2}}})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_write_json_failure_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    with pytest.raises(TypeError):
        write_json(path, [object()])
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- validation


def test_validate_accepts_a_complete_result() -> None:
    validate_evaluate_result(_result())


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d["calibration"].pop("ece"), "missing key 'calibration.ece'"),
        (lambda d: d.pop("reliability"), "missing key 'reliability'"),
        (lambda d: d["segmentation"].__setitem__("foo", 0.1),
         "unexpected key 'segmentation.foo'"),
        (lambda d: d.__setitem__("extra", 1), "unexpected key 'extra'"),
        (lambda d: d.__setitem__("schema", "densecal.evaluate/0"), "schema must be"),
        (lambda d: d["calibration"].__setitem__("ece", 3.125), "calibration.ece = 3.125"),
        (lambda d: d["segmentation"].__setitem__("mae", -0.1), "segmentation.mae"),
        (lambda d: d["segmentation"].__setitem__("dice", "0.9"), "must be a number"),
        (lambda d: d["reliability"]["count"].pop(), "reliability.count has 3 entries"),
        (lambda d: d["dataset"].__setitem__("n_images", True), "dataset.n_images"),
        (lambda d: d["protocol"].pop("target"), "missing key 'protocol.target'"),
    ],
)
def test_validate_names_the_problem(edit, match: str) -> None:
    d = _result()
    edit(d)
    with pytest.raises(ValueError, match=match) as info:
        validate_evaluate_result(d)
    assert isinstance(info.value, DensecalInputError)
    assert str(info.value).startswith("evaluate result: ")


def test_validate_refuses_an_e_measure_above_one() -> None:
    d = _result()
    d["segmentation"]["max_e"] = 64 / 63  # the reference code's all-empty 8x8 value
    with pytest.raises(ValueError, match=r"segmentation.max_e = 1.01587\d* is not a fraction"):
        validate_evaluate_result(d)


def test_validate_allows_null_and_unbounded_keys() -> None:
    d = _result()
    d["calibration"]["nll"] = 7.5  # NLL is not a fraction
    d["segmentation"]["weighted_f"] = None  # undefined value read back from JSON
    d["segmentation"]["mean_f"] = NAN
    validate_evaluate_result(d)


# --------------------------------------------------------------------------- CSV and Markdown


def test_per_image_csv_exact(tmp_path: Path) -> None:
    path = tmp_path / "per_image.csv"
    rows = [
        {"image": "a", "mae": 0.1, "dice": 1.0, "n": 3},
        {"image": "b,c", "mae": 1 / 3, "dice": np.float64(NAN), "n": None},
        {"image": "d", "mae": np.float32(0.5), "dice": 0.0, "n": np.int64(7)},
    ]
    write_per_image_csv(path, rows)
    assert path.read_text() == (
        "image,mae,dice,n\n"
        "a,0.1,1.0,3\n"
        '"b,c",0.3333333333333333,nan,\n'
        "d,0.5,0.0,7\n"
    )


def test_per_image_csv_rejects_inconsistent_rows(tmp_path: Path) -> None:
    path = tmp_path / "per_image.csv"
    path.write_text("previous\n")
    with pytest.raises(DensecalInputError, match=r"rows\[1\]"):
        write_per_image_csv(path, [{"image": "a", "mae": 0.1}, {"mae": 0.2, "image": "b"}])
    with pytest.raises(DensecalInputError, match="empty"):
        write_per_image_csv(path, [])
    assert path.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["per_image.csv"]


def test_report_md_exact(tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    write_report_md(path, "densecal demo", [("Results", "| a |\n| --- |\n"), ("Notes", "ok")])
    assert path.read_text() == (
        "# densecal demo\n\n## Results\n\n| a |\n| --- |\n\n## Notes\n\nok\n"
    )


# --------------------------------------------------------------------------- tables


def test_format_percent_and_value() -> None:
    assert format_percent(0.0321) == "3.21"
    assert format_percent(0.5, 1, sign=True) == "50.0%"
    assert format_percent(0.126, 0) == "13"
    assert format_percent(NAN) == format_percent(None) == format_percent(math.inf) == "n/a"
    assert format_value("calibration", "accuracy", 0.9375) == "93.75"
    assert format_value("calibration", "brier", 0.046875) == "0.047"
    assert format_value("segmentation", "mae", 0.0625) == "0.062"  # round-half-even of ...25
    assert format_value("dataset", "n_images", 500) == "500"
    assert format_value("protocol", "protocol", "raw") == "raw"
    assert format_value("segmentation", "dice", None) == "n/a"


def test_markdown_table_exact() -> None:
    table = markdown_table(["Run", "ECE %"], [["bce", "3.12"], ["a|b", "n/a"]])
    assert table == (
        "| Run  | ECE % |\n"
        "| ---- | ----- |\n"
        "| bce  | 3.12  |\n"
        "| a\\|b | n/a   |\n"
    )
    with pytest.raises(DensecalInputError, match=r"rows\[0\]: has 1 cells"):
        markdown_table(["a", "b"], [["x"]])


def test_metrics_table_exact() -> None:
    ood = _result(ece=0.0078125, mae=0.001)
    del ood["segmentation"]["mae"]  # a value missing from one result shows n/a
    runs = {"bce": {"test": _result(), "ood": ood}, "aslp": {"test": _result(ece=0.5)}}
    columns = [("ECE %", "calibration", "ece"), ("Brier", "calibration", "brier"),
               ("MAE", "segmentation", "mae"), ("Images", "dataset", "n_images")]
    assert metrics_table(runs, columns) == (
        "| Run  | Split | ECE % | Brier | MAE   | Images |\n"
        "| ---- | ----- | ----- | ----- | ----- | ------ |\n"
        "| bce  | test  | 3.12  | 0.047 | 0.062 | 4      |\n"
        "| bce  | ood   | 0.78  | 0.047 | n/a   | 4      |\n"
        "| aslp | test  | 50.00 | 0.047 | 0.062 | 4      |\n"
    )
    with pytest.raises(DensecalInputError, match=r"'ECE' \(calibration\.eec\) is in no result"):
        metrics_table(runs, [("ECE", "calibration", "eec")])
    with pytest.raises(DensecalInputError, match=r"no \(run, split\) result"):
        metrics_table({"bce": {}}, columns)


def test_metrics_table_default_columns_cover_the_schema() -> None:
    table = metrics_table({"bce": {"test": _result()}})
    assert table.splitlines()[2] == (
        "| bce | test  | 3.12  | 1.56 | 25.00 | 3.91  | 93.75 | 0.047 | 1.500 | 0.062 | 0.875 "
        "| 0.844 | 0.900 |"
    )
