"""The CLI as a user runs it: every verb end to end, and bad input -> one line, exit 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densecal.cli.main import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``densecal ARGV`` in-process; return (exit code, stdout, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_input_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_help_lists_verbs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for verb in ("demo", "train", "predict", "evaluate", "data"):
        assert verb in out


def test_predict_and_evaluate_end_to_end(tiny_demo: dict[str, Path], tiny_checkpoint: Path,
                                         tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    maps = tmp_path / "maps"
    code, _, err = run(["predict", "--checkpoint", str(tiny_checkpoint), "--data",
                        str(tiny_demo["test"]), "--out", str(maps)], capsys)
    assert code == 0, err
    pngs = sorted(maps.glob("*.png"))
    assert len(pngs) == 6 and Image.open(pngs[0]).size == (32, 32)

    from_maps, from_ckpt = tmp_path / "eval_maps", tmp_path / "eval_ckpt"
    code, out, err = run(["evaluate", "--pred", str(maps), "--gt", str(tiny_demo["test"]),
                          "--out", str(from_maps), "--num-workers", "1"], capsys)
    assert code == 0, err
    assert re.search(r"^test: 6 images in [0-9.]+ s \([0-9.]+ images/s; calibration [0-9.]+ s, "
                     r"segmentation [0-9.]+ s\)$", out, re.MULTILINE), out
    code, out, err = run(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data",
                          str(tiny_demo["test"]), "--ood", str(tiny_demo["ood"]), "--out",
                          str(from_ckpt)], capsys)
    assert code == 0, err
    assert "ood: ECE" in out
    for name in ("metrics.json", "metrics_ood.json", "report.md", "reliability.png",
                 "per_image.csv", "per_image_ood.csv"):
        assert (from_ckpt / name).is_file(), name
    a = json.loads((from_maps / "metrics.json").read_text())
    b = json.loads((from_ckpt / "metrics.json").read_text())
    assert a["schema"] == "densecal.evaluate/2"
    # 8-bit PNG maps vs float maps: quantisation moves ECE by at most half a grey level.
    assert abs(a["calibration"]["ece"] - b["calibration"]["ece"]) < 1 / 255
    assert a["dataset"]["n_images"] == 6
    ood = json.loads((from_ckpt / "metrics_ood.json").read_text())
    assert ood["dataset"]["n_images"] == 4


def test_resume_continues_a_finished_run(tiny_demo: dict[str, Path], tiny_checkpoint: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    run_dir = tiny_checkpoint.parent.parent
    before = torch.load(tiny_checkpoint, weights_only=False)
    assert "perturbation.alpha" in before["state_dict"]
    assert (run_dir / "alpha.csv").is_file() and (run_dir / "config.json").is_file()
    code, _, err = run(["train", "--out", str(run_dir), "--epochs", "3", "--resume"], capsys)
    assert code == 0, err
    after = torch.load(tiny_checkpoint, weights_only=False)
    assert after["epoch"] == before["epoch"] + 1
    # the resumed run keeps its saved configuration (ASLP), including the alpha table
    assert after["hyper_parameters"]["config"]["method"] == "aslp"


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture()
def pred_gt(tmp_path: Path) -> tuple[Path, Path]:
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    for name in ("a", "b"):
        _write_png(pred / f"{name}.png", np.full((8, 8), 200, np.uint8))
        _write_png(gt / f"{name}.png", np.full((8, 8), 255, np.uint8))
    return pred, gt


def test_bad_inputs_exit_2_with_one_line(pred_gt: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    pred, gt = pred_gt
    out = tmp_path / "out"
    cases: list[tuple[list[str], tuple[str, ...]]] = []
    # missing folder
    cases.append((["evaluate", "--pred", str(tmp_path / "nope"), "--gt", str(gt)], ("nope",)))
    # corrupt prediction file
    (pred / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    cases.append((["evaluate", "--pred", str(pred), "--gt", str(gt)], ("a.png",)))
    for argv, fragments in cases:
        code, _, err = run([*argv, "--out", str(out)], capsys)
        assert_input_error(code, err, *fragments)
    assert not out.exists(), "no partial output on bad input"


def test_size_mismatch_and_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, gt, out = tmp_path / "pred", tmp_path / "gt", tmp_path / "out"
    _write_png(gt / "a.png", np.zeros((8, 8), np.uint8))
    _write_png(gt / "b.png", np.zeros((8, 8), np.uint8))
    pred.mkdir()
    np.save(pred / "a.npy", np.zeros((8, 8), np.float32))
    np.save(pred / "b.npy", np.zeros((6, 8), np.float32))
    code, _, err = run(["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(out)],
                       capsys)
    assert_input_error(code, err, "b", "size")
    np.save(pred / "b.npy", np.full((8, 8), np.nan, np.float32))
    code, _, err = run(["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(out)],
                       capsys)
    assert_input_error(code, err, "b.npy", "NaN")
    assert not out.exists()


def test_existing_results_survive_a_failed_run(pred_gt: tuple[Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    pred, gt = pred_gt
    out = tmp_path / "out"
    code, _, err = run(["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(out)],
                       capsys)
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (pred / "b.png").write_bytes(b"garbage")
    code, _, err = run(["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(out)],
                       capsys)
    assert_input_error(code, err, "b.png")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_train_and_predict_bad_inputs(tmp_path: Path, tiny_demo: dict[str, Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(["train", "--data", str(empty), "--out", str(tmp_path / "r1")], capsys)
    assert_input_error(code, err, "empty")
    code, _, err = run(["train", "--method", "magic", "--data", str(tiny_demo["train"]),
                        "--out", str(tmp_path / "r2")], capsys)
    assert_input_error(code, err, "--method", "magic")
    code, _, err = run(["predict", "--checkpoint", str(tmp_path / "missing.ckpt"), "--data",
                        str(tiny_demo["test"]), "--out", str(tmp_path / "p")], capsys)
    assert_input_error(code, err, "missing.ckpt")
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(b"not a checkpoint")
    code, _, err = run(["predict", "--checkpoint", str(bogus), "--data",
                        str(tiny_demo["test"]), "--out", str(tmp_path / "p")], capsys)
    assert_input_error(code, err, "bogus.ckpt")
    code, _, err = run(["evaluate", "--pred", str(tmp_path)], capsys)
    assert_input_error(code, err, "--gt")
    assert not (tmp_path / "r1").exists() and not (tmp_path / "p").exists()


def test_console_script_exit_code_and_no_traceback(tmp_path: Path) -> None:
    """The installed entry point itself (a subprocess), not just ``main``."""
    proc = subprocess.run([sys.executable, "-m", "densecal", "evaluate", "--pred",
                           str(tmp_path / "none"), "--gt", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("densecal: error: ")


def test_calibrate_stores_temperature_applied_by_predict(
        tiny_demo: dict[str, Path], tiny_checkpoint: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    import torch

    from densecal.data import read_image
    from densecal.methods import load_module, predict_images, predict_logits

    before = hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    out = tmp_path / "ts.ckpt"
    code, printed, err = run(["calibrate", "--checkpoint", str(tiny_checkpoint), "--data",
                              str(tiny_demo["val"]), "--out", str(out)], capsys)
    assert code == 0, err
    assert hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest() == before
    module = load_module(out)
    t = module.temperature.temperature
    assert 0.05 <= t <= 20.0 and f"T = {t:.4f}" in printed
    image = read_image(next((tiny_demo["test"] / "images").iterdir()))
    logits = next(predict_logits(module, [image]))
    probs = next(predict_images(module, [image]))
    np.testing.assert_allclose(probs, torch.sigmoid(logits / t).numpy(), atol=1e-6)
    # the uncalibrated checkpoint still loads with T = 1
    assert load_module(tiny_checkpoint).temperature.temperature == 1.0


def test_ood_folder_with_masks_is_paired_strictly(tiny_demo: dict[str, Path],
                                                   tiny_checkpoint: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A broken OOD mask folder is reported, not silently replaced by all-zero masks."""
    import shutil

    ood = tmp_path / "ood"
    shutil.copytree(tiny_demo["ood"], ood)
    next((ood / "masks").iterdir()).unlink()
    code, _, err = run(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data",
                        str(tiny_demo["test"]), "--ood", str(ood), "--out",
                        str(tmp_path / "eval")], capsys)
    assert code == 2 and "unmatched" in err
    assert not (tmp_path / "eval").exists()
