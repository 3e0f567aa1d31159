"""Bad input across the CLI verbs: exit code 2, one line naming the file or argument, no
traceback, no partial output, and the inputs untouched."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densecal.cli.main import main


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _dataset(root: Path, n: int = 4, size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        _png(root / "images" / f"im{i}.png", rng.integers(0, 255, (size, size, 3), np.uint8))
        _png(root / "masks" / f"im{i}.png", (rng.random((size, size)) > 0.5).astype(np.uint8) * 255)
    return root


def _maps(folder: Path, n: int = 4, size: int = 16) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        np.save(folder / f"im{i}.npy", np.full((size, size), 0.5, np.float32))
    return folder


def _truncated_image(root: Path) -> str:
    data = (root / "images" / "im1.png").read_bytes()
    (root / "images" / "im1.png").write_bytes(data[: len(data) // 2])
    return "im1.png"


def _size_mismatch(root: Path) -> str:
    _png(root / "masks" / "im2.png", np.zeros((8, 8), np.uint8))
    return "im2"


def _unmatched(root: Path) -> str:
    (root / "masks" / "im3.png").rename(root / "masks" / "other.png")
    return "unmatched"


def _duplicate_stem(root: Path) -> str:
    shutil.copy(root / "images" / "im0.png", root / "images" / "im0.jpg")
    return "duplicate name 'im0'"


def _rgb_mask_with_colours(root: Path) -> str:
    _png(root / "masks" / "im0.png", np.dstack([np.zeros((16, 16), np.uint8),
                                                np.full((16, 16), 255, np.uint8),
                                                np.zeros((16, 16), np.uint8)]))
    return "im0.png"


def _empty_masks(root: Path) -> str:
    for p in (root / "masks").iterdir():
        p.unlink()
    return "masks"


BREAKERS: list[Callable[[Path], str]] = [_truncated_image, _size_mismatch, _unmatched,
                                         _duplicate_stem, _rgb_mask_with_colours, _empty_masks]


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code), capsys.readouterr().err


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda f: f.__name__.strip("_"))
def test_train_refuses_broken_dataset(breaker: Callable[[Path], str], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = _dataset(tmp_path / "data")
    fragment = breaker(data)
    before = _digest(data)
    run = tmp_path / "run"
    code, err = _run(["train", "--data", str(data), "--epochs", "1", "--image-size", "16",
                      "--batch-size", "2", "--val-fraction", "0.25", "--out", str(run)], capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert fragment in err
    assert not run.exists(), "a failed new run leaves no folder behind"
    assert _digest(data) == before, "inputs untouched"


@pytest.mark.parametrize(("array", "fragment"), [
    (np.full((16, 16), 1.5, np.float32), "outside [0, 1]"),
    (np.full((16, 16), np.inf, np.float32), "NaN or Inf"),
    (np.zeros((2, 16, 16), np.float32), "im0.npy"),
])
def test_evaluate_refuses_bad_npy(array: np.ndarray, fragment: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    data, pred = _dataset(tmp_path / "data"), _maps(tmp_path / "pred")
    np.save(pred / "im0.npy", array)
    out = tmp_path / "out"
    code, err = _run(["evaluate", "--pred", str(pred), "--gt", str(data), "--out", str(out)],
                     capsys)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(("argv", "fragment"), [
    (["evaluate", "--pred", "P", "--gt", "D", "--n-bins", "0"], "--n-bins"),
    (["evaluate", "--pred", "P", "--gt", "D", "--protocol", "matlab"], "--protocol"),
    (["evaluate", "--pred", "P", "--gt", "D", "--confidence", "max"], "confidence"),
    (["predict", "--checkpoint", "C", "--data", "D", "--out", "O", "--format", "jpg"],
     "--format"),
    (["train", "--data", "D", "--image-size", "30"], "--image-size"),
    (["train", "--data", "D", "--val-fraction", "1.5"], "--val-fraction"),
])
def test_bad_options(argv: list[str], fragment: str, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    data, pred = _dataset(tmp_path / "data"), _maps(tmp_path / "pred")
    mapping = {"P": str(pred), "D": str(data), "C": str(tmp_path / "none.ckpt"),
               "O": str(tmp_path / "o")}
    argv = [mapping.get(a, a) for a in argv]
    if argv[0] == "train":
        argv += ["--out", str(tmp_path / "run")]
    code, err = _run(argv, capsys)
    assert code == 2, err
    assert fragment in err and "Traceback" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize(("option", "value"), [
    ("--aslp-objective", "greedy"), ("--technique", "flip"), ("--beta", "3"),
    ("--model", "resnet9000"),
])
def test_train_refuses_bad_method_options(option: str, value: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    data = _dataset(tmp_path / "data")
    code, err = _run(["train", "--method", "aslp", "--data", str(data), option, value,
                      "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
