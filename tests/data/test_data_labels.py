"""Multi-class label maps: read_label value rules and errors, nearest-neighbour resize/augment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from densecal.data import FolderDataset, read_label
from densecal.data.folder import augment_labels, resize_labels
from densecal.errors import DensecalInputError

VALUES = np.array([[0, 1, 2], [255, 1, 0]], dtype=np.uint8)


def test_read_label_formats(tmp_path: Path) -> None:
    Image.fromarray(VALUES).save(tmp_path / "l.png")
    palette = Image.new("P", (3, 2))
    palette.putpalette([200, 10, 10] * 256)  # colours must not matter, only indices
    palette.putdata(VALUES.ravel().tolist())
    palette.save(tmp_path / "p.png")
    Image.fromarray(VALUES.astype(np.uint16) * 100).save(tmp_path / "w.png")
    Image.fromarray(np.repeat(VALUES[:, :, None], 3, axis=2)).save(tmp_path / "rgb.png")
    for name, expected in [("l", VALUES), ("p", VALUES), ("w", VALUES.astype(np.int64) * 100),
                           ("rgb", VALUES)]:
        label = read_label(tmp_path / f"{name}.png")
        assert label.dtype == np.int64, name
        np.testing.assert_array_equal(label, expected, err_msg=name)


def test_read_label_errors(tmp_path: Path) -> None:
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    Image.fromarray(np.zeros((2, 2), np.float32)).save(tmp_path / "float.tif")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "l.jpg").write_bytes(b"")
    for name, fragment in [("missing.png", "file not found"), ("colour.png", "R, G and B"),
                           ("float.tif", "unsupported label mode 'F'"),
                           ("broken.png", "cannot be decoded"), ("l.jpg", "extension")]:
        with pytest.raises(DensecalInputError, match=fragment) as info:
            read_label(tmp_path / name)
        assert str(info.value).startswith(str(tmp_path / name))
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("size", [5, 16, 47])
def test_resize_labels_only_keeps_input_values(size: int) -> None:
    torch.manual_seed(size)
    label = torch.tensor([0, 2, 7, 255])[torch.randint(0, 4, (23, 31))]
    out = resize_labels(label, size)
    assert out.shape == (size, size) and out.dtype == torch.int64
    assert set(out.unique().tolist()) <= set(label.unique().tolist())


def test_resize_labels_exact_cases() -> None:
    label = torch.tensor([[0, 1], [2, 255]])
    up = resize_labels(label, 4)
    expected = label.repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(up, expected)
    assert torch.equal(resize_labels(up, 2), label)


def test_augment_labels_keeps_label_values_and_fills() -> None:
    torch.manual_seed(0)
    label = torch.tensor([0, 1, 2])[torch.randint(0, 3, (40, 40))]
    image = torch.rand(3, 40, 40)
    seen: set[int] = set()
    for _ in range(60):
        img, out = augment_labels(image, label, fill=255)
        assert img.shape[-2:] == out.shape and out.dtype == torch.int64
        seen |= set(out.unique().tolist())
    assert seen == {0, 1, 2, 255}  # 255 only from rotated-in corners, nothing blended


def test_folder_dataset_labels(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
        tmp_path / "images" / "a.png")
    labels = rng.choice(np.array([0, 1, 2, 255], np.uint8), (20, 24))
    Image.fromarray(labels).save(tmp_path / "masks" / "a.png")
    for augment in (False, True):
        data = FolderDataset(tmp_path, image_size=16, labels=True, num_classes=3,
                             ignore_index=255, augment=augment)
        item = data[0]
        assert item["image"].shape == (3, 16, 16)
        assert item["mask"].shape == (16, 16) and item["mask"].dtype == torch.int64
        assert set(item["mask"].unique().tolist()) <= {0, 1, 2, 255}
    with pytest.raises(DensecalInputError, match=r"a\.png: label value 255 is not a class index "
                                                 r"0\.\.2"):
        FolderDataset(tmp_path, labels=True, num_classes=3)[0]
    full = FolderDataset(tmp_path, labels=True)[0]["mask"]
    np.testing.assert_array_equal(full.numpy(), labels)
