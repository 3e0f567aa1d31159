"""Readers: exact value conventions and one-line errors naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densecal.data.readers import read_image, read_mask, read_prediction
from densecal.errors import DensecalInputError


def _save(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def _raises_naming(path: Path, fn, *fragments: str) -> str:
    with pytest.raises(DensecalInputError) as info:
        fn(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_mask_8bit_values_exact(tmp_path: Path) -> None:
    values = np.array([[0, 1, 128], [254, 255, 37]], dtype=np.uint8)
    mask = read_mask(_save(tmp_path / "m.png", values))
    assert mask.dtype == np.float32 and mask.shape == (2, 3)
    assert mask[0, 2] == np.float32(128 / 255)
    assert mask[1, 1] == 1.0 and mask[0, 0] == 0.0
    np.testing.assert_array_equal(mask, (values.astype(np.float64) / 255).astype(np.float32))


def test_mask_16bit_bool_rgb(tmp_path: Path) -> None:
    sixteen = np.array([[0, 65535, 32768]], dtype=np.uint16)
    got = read_mask(_save(tmp_path / "m16.png", sixteen))
    np.testing.assert_array_equal(got, np.array([[0.0, 1.0, 32768 / 65535]], dtype=np.float32))

    bits = np.array([[True, False], [False, True]])
    np.testing.assert_array_equal(read_mask(_save(tmp_path / "b.png", bits)),
                                  bits.astype(np.float32))

    gray = np.array([[0, 51, 255]], dtype=np.uint8)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(read_mask(_save(tmp_path / "rgb.png", rgb)),
                                  np.array([[0.0, 0.2, 1.0]], dtype=np.float32))
    rgba = np.concatenate([rgb, np.full((1, 3, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(read_mask(_save(tmp_path / "rgba.png", rgba)),
                                  read_mask(tmp_path / "rgb.png"))


def test_mask_colour_channels_differ(tmp_path: Path) -> None:
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    _raises_naming(_save(tmp_path / "c.png", rgb), read_mask, "channels")


def test_read_image_expands_and_drops(tmp_path: Path) -> None:
    gray = np.array([[0, 9], [200, 255]], dtype=np.uint8)
    image = read_image(_save(tmp_path / "g.png", gray))
    assert image.shape == (2, 2, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, np.repeat(gray[:, :, None], 3, axis=2))
    rgba = np.arange(2 * 2 * 4, dtype=np.uint8).reshape(2, 2, 4)
    np.testing.assert_array_equal(read_image(_save(tmp_path / "a.png", rgba)), rgba[:, :, :3])
    rgb = np.arange(3 * 4 * 3, dtype=np.uint8).reshape(3, 4, 3)
    for ext in (".bmp", ".tif"):
        np.testing.assert_array_equal(read_image(_save(tmp_path / f"x{ext}", rgb)), rgb)


def test_truncated_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    good = _save(tmp_path / "good.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = good.read_bytes()
    bad = tmp_path / "bad.png"
    bad.write_bytes(data[: len(data) // 2])
    _raises_naming(bad, read_image, "cannot be decoded")
    _raises_naming(bad, read_mask, "cannot be decoded")
    _raises_naming(bad, read_prediction, "cannot be decoded")


def test_not_an_image_and_missing_and_extension(tmp_path: Path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not a png at all")
    _raises_naming(junk, read_image, "cannot be decoded")
    _raises_naming(tmp_path / "absent.png", read_mask, "not found")
    folder = tmp_path / "dir.png"
    folder.mkdir()
    _raises_naming(folder, read_image, "not a file")
    gif = tmp_path / "x.gif"
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(gif)
    _raises_naming(gif, read_image, "unsupported extension")
    jpg = _save(tmp_path / "x.jpg", np.zeros((4, 4, 3), np.uint8))
    _raises_naming(jpg, read_mask, "unsupported extension")
    _raises_naming(jpg, read_prediction, "unsupported extension")


def test_prediction_npy(tmp_path: Path) -> None:
    probs = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float64)
    np.save(tmp_path / "p.npy", probs)
    got = read_prediction(tmp_path / "p.npy")
    assert got.dtype == np.float32 and got.shape == (2, 2)
    np.testing.assert_array_equal(got, probs.astype(np.float32))
    np.save(tmp_path / "q.npy", probs[None].astype(np.float16))
    np.testing.assert_array_equal(read_prediction(tmp_path / "q.npy"), got)
    png = _save(tmp_path / "p.png", np.array([[0, 128, 255]], dtype=np.uint8))
    np.testing.assert_array_equal(read_prediction(png),
                                  np.array([[0.0, 128 / 255, 1.0]], dtype=np.float32))


def test_prediction_keep_8bit(tmp_path: Path) -> None:
    levels = np.array([[0, 1, 128, 255]], dtype=np.uint8)
    png = _save(tmp_path / "p.png", levels)
    got = read_prediction(png, keep_8bit=True)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, levels)
    rgb = _save(tmp_path / "rgb.png", np.repeat(levels[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(read_prediction(rgb, keep_8bit=True), levels)
    # 16-bit PNGs and .npy maps stay float32 probabilities
    wide = tmp_path / "w.png"
    Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)).save(wide)
    assert read_prediction(wide, keep_8bit=True).tolist() == [[0.0, 1.0]]
    np.save(tmp_path / "p.npy", np.array([[0.25]]))
    assert read_prediction(tmp_path / "p.npy", keep_8bit=True).dtype == np.float32


@pytest.mark.parametrize(("array", "fragments"), [
    (np.array([[0.5, np.nan]]), ("NaN or Inf",)),
    (np.array([[0.5, np.inf]]), ("NaN or Inf",)),
    (np.array([[0.5, 1.5]]), ("values outside [0, 1]", "max 1.5", "probabilities expected")),
    (np.array([[-0.25, 0.5]]), ("values outside [0, 1]", "min -0.25")),
    (np.zeros((2, 3, 4)), ("(2, 3, 4)",)),
    (np.zeros((5,)), ("(5,)",)),
    (np.array([["a", "b"]]), ("dtype",)),
])
def test_prediction_npy_errors(tmp_path: Path, array: np.ndarray,
                               fragments: tuple[str, ...]) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, array)
    _raises_naming(path, read_prediction, *fragments)


def test_prediction_npy_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    _raises_naming(path, read_prediction, "cannot be read")
