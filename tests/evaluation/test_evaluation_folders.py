"""Folders of saved maps: workers give the same numbers, bit for bit; --measures calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from densecal.errors import DensecalInputError
from densecal.evaluation import EvaluationOptions
from densecal.evaluation.folders import evaluate_prediction_folder


def _folders(root, n: int = 12, wrong_size_at: int | None = None):
    rng = np.random.default_rng(7)
    pred, gt = root / "pred", root / "gt"
    pred.mkdir()
    gt.mkdir()
    for i in range(n):
        h, w = 20 + i, 30 - i
        truth = rng.random((h, w)) > 0.6
        Image.fromarray(truth.astype(np.uint8) * 255).save(gt / f"m{i:02d}.png")
        q = np.clip(0.7 * truth + 0.4 * rng.random((h, w)), 0, 1)
        if i % 2:  # half 8-bit PNGs, half float .npy
            Image.fromarray(np.round(255 * q).astype(np.uint8)).save(pred / f"m{i:02d}.png")
        else:
            q = q.astype(np.float32)
            if i == wrong_size_at:
                q = q[:, 1:]
            np.save(pred / f"m{i:02d}.npy", q)
    return pred, gt


@pytest.mark.parametrize("protocol", ["raw", "official"])
def test_workers_give_the_same_numbers_bit_for_bit(tmp_path, protocol: str) -> None:
    pred, gt = _folders(tmp_path)
    options = EvaluationOptions(protocol=protocol)
    one = evaluate_prediction_folder(pred, gt, options)["test"]
    two = evaluate_prediction_folder(pred, gt, options, num_workers=2)["test"]
    # every float equal, not close (repr is exact; NaN in empty bins compares equal as text)
    assert json.dumps(one.result) == json.dumps(two.result)
    assert json.dumps(one.per_image) == json.dumps(two.per_image)  # same image order too


def test_calibration_only_skips_the_sod_measures(tmp_path) -> None:
    pred, gt = _folders(tmp_path)
    full = evaluate_prediction_folder(pred, gt)["test"]
    for workers in (0, 2):
        cal = evaluate_prediction_folder(pred, gt, EvaluationOptions(measures="calibration"),
                                         num_workers=workers)["test"]
        assert json.dumps(cal.result["calibration"]) == json.dumps(full.result["calibration"])
        assert set(cal.result["segmentation"].values()) == {None}
        assert [r["mae"] for r in cal.per_image] == [None] * 12


def test_a_bad_pair_in_a_worker_names_its_files(tmp_path) -> None:
    # the worker skips the SOD measures of a bad pair; the main process reports it
    pred, gt = _folders(tmp_path, wrong_size_at=4)
    with pytest.raises(DensecalInputError, match=r"m04\.npy \(ground truth .*m04\.png\): "
                                                 r"prediction size \(24, 25\) does not match"):
        evaluate_prediction_folder(pred, gt, num_workers=2)


def test_measures_option_is_checked() -> None:
    with pytest.raises(DensecalInputError, match=r"^--measures: unknown value 'sod'; choose"):
        EvaluationOptions(measures="sod")
