"""Pairing files of folder datasets by stem, folder auto-detection and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densecal.data.pairs import find_mask_dir, find_pairs, find_prediction_pairs
from densecal.errors import DensecalInputError


def _touch_image(path: Path, size: tuple[int, int] = (4, 5)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size).save(path)
    return path


def _dataset(root: Path, image_dir: str, mask_dir: str, names: list[str],
             image_ext: str = ".jpg", mask_names: list[str] | None = None) -> Path:
    for name in names:
        _touch_image(root / image_dir / f"{name}{image_ext}")
    for name in names if mask_names is None else mask_names:
        _touch_image(root / mask_dir / f"{name}.png")
    return root


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(DensecalInputError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("image_dir", "mask_dir"), [
    ("images", "masks"), ("Image", "GT"), ("Imgs", "Mask"), ("img", "gt"), ("im", "labels"),
    ("DUTS-TR-Image", "DUTS-TR-Mask"),
])
def test_autodetect_layouts(tmp_path: Path, image_dir: str, mask_dir: str) -> None:
    root = _dataset(tmp_path / "ds", image_dir, mask_dir, ["b", "a", "c"])
    pairs = find_pairs(root)
    assert [p.name for p in pairs] == ["a", "b", "c"]
    assert pairs[0].image == root / image_dir / "a.jpg"
    assert pairs[0].mask == root / mask_dir / "a.png"
    assert find_mask_dir(root) == root / mask_dir


def test_explicit_folders_and_mixed_extensions(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _touch_image(root / "photos" / "x.PNG")
    _touch_image(root / "photos" / "y.tiff")
    (root / "photos" / "notes.txt").write_text("not an image")
    (root / "photos" / ".hidden.jpg").write_bytes(b"")
    _touch_image(root / "truth" / "x.png")
    _touch_image(root / "truth" / "y.bmp")
    pairs = find_pairs(root, image_dir="photos", mask_dir=root / "truth")
    assert [(p.name, p.image.name, p.mask.name) for p in pairs] == [
        ("x", "x.PNG", "x.png"), ("y", "y.tiff", "y.bmp")]


def test_root_errors(tmp_path: Path) -> None:
    assert "not found" in _error(find_pairs, tmp_path / "nope")
    file = tmp_path / "file"
    file.write_text("x")
    assert "not a folder" in _error(find_pairs, file)
    root = tmp_path / "ds"
    (root / "pictures").mkdir(parents=True)
    (root / "masks").mkdir()
    message = _error(find_pairs, root)
    assert str(root) in message and "no image folder" in message and "pictures" in message
    assert "not found" in _error(find_pairs, root, image_dir="missing")


def test_several_candidate_folders(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds", "images", "masks", ["a"])
    (root / "DUTS-TE-Image").mkdir()
    message = _error(find_pairs, root)
    assert "several image folders" in message and "DUTS-TE-Image" in message


def test_empty_folder(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    _touch_image(root / "masks" / "a.png")
    message = _error(find_pairs, root)
    assert str(root / "images") in message and "no image files" in message


def test_duplicate_stems(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds", "images", "masks", ["a", "b"])
    _touch_image(root / "images" / "a.png")
    message = _error(find_pairs, root)
    assert "'a'" in message and "a.jpg" in message and "a.png" in message


def test_unmatched_names_listed(tmp_path: Path) -> None:
    images = [f"i{k}" for k in range(7)] + ["common"]
    masks = ["common", "m1", "m2"]
    root = _dataset(tmp_path / "ds", "images", "masks", images, mask_names=masks)
    message = _error(find_pairs, root)
    assert "7 image(s) have no mask (i0, i1, i2, i3, i4, ...)" in message
    assert "i5" not in message and "common" not in message
    assert "2 mask(s) have no image (m1, m2)" in message


def test_prediction_pairs(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds", "Imgs", "GT", ["a", "b"])
    preds = tmp_path / "preds"
    preds.mkdir()
    np.save(preds / "a.npy", np.zeros((5, 4)))
    _touch_image(preds / "b.png")
    for gt in (root, root / "GT"):
        pairs = find_prediction_pairs(preds, gt)
        assert [(p.name, p.image.name, p.mask) for p in pairs] == [
            ("a", "a.npy", root / "GT" / "a.png"), ("b", "b.png", root / "GT" / "b.png")]
    _touch_image(preds / "c.png")
    assert "1 prediction(s) have no mask (c)" in _error(find_prediction_pairs, preds, root)
    np.save(preds / "b.npy", np.zeros((5, 4)))
    assert "b.npy" in _error(find_prediction_pairs, preds, root)
    assert "not found" in _error(find_prediction_pairs, tmp_path / "none", root)


def test_find_images_in_root_or_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    from densecal.data import find_images, find_predictions

    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("b", "a"):
        Image.new("RGB", (4, 4)).save(plain / f"{name}.jpg")
    assert [n for n, _ in find_images(plain)] == ["a", "b"]
    dataset = tmp_path / "ds"
    (dataset / "Imgs").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(dataset / "Imgs" / "x.png")
    assert find_images(dataset) == [("x", dataset / "Imgs" / "x.png")]
    (plain / "a.npy").write_bytes(b"")
    assert [n for n, _ in find_predictions(plain)] == ["a"]
