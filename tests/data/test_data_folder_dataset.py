"""FolderDataset items, soft resizing, joint augmentation, split_indices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from densecal.data.folder import FolderDataset, split_indices
from densecal.data.pairs import Pair
from densecal.data.transforms import resize
from densecal.errors import DensecalInputError


def _write(root: Path, name: str, image: np.ndarray, mask: np.ndarray) -> Pair:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{name}.png")
    Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    return Pair(name, root / "images" / f"{name}.png", root / "masks" / f"{name}.png")


def _ramp_pair(height: int = 24, width: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Image whose red channel equals the mask (as 8-bit), a ramp left to right."""
    ramp = np.tile(np.linspace(0, 255, width).round().astype(np.uint8), (height, 1))
    image = np.stack([ramp, 255 - ramp, np.full_like(ramp, 9)], axis=-1)
    return image, ramp


def test_item_original_size(tmp_path: Path) -> None:
    image, mask = _ramp_pair(5, 7)
    _write(tmp_path, "b", image, mask)
    _write(tmp_path, "a", image[::-1].copy(), mask[::-1].copy())
    ds = FolderDataset(tmp_path)
    assert len(ds) == 2 and ds.names == ["a", "b"]
    item = ds[1]
    assert item["name"] == "b" and item["index"] == 1
    assert item["size"].tolist() == [5, 7]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 5, 7)
    assert item["mask"].dtype == torch.float32 and item["mask"].shape == (1, 5, 7)
    np.testing.assert_array_equal(item["image"].numpy(),
                                  image.transpose(2, 0, 1).astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(item["mask"][0].numpy(), mask.astype(np.float32) / 255)


def test_item_resized_and_collated(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for k, (h, w) in enumerate([(40, 50), (20, 10)]):
        _write(tmp_path, f"s{k}", rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
               (rng.random((h, w)) > 0.5).astype(np.uint8) * 255)
    ds = FolderDataset(tmp_path, image_size=16)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, 16, 16) and batch["mask"].shape == (2, 1, 16, 16)
    assert batch["size"].tolist() == [[40, 50], [20, 10]]
    assert batch["index"].tolist() == [0, 1] and batch["name"] == ["s0", "s1"]
    for key in ("image", "mask"):
        assert batch[key].min() >= 0 and batch[key].max() <= 1
    soft = batch["mask"][(batch["mask"] > 0) & (batch["mask"] < 1)]
    assert soft.numel() > 0


def test_resize_bilinear_upsampling_reference() -> None:
    # align_corners=False: output j samples input (j + 0.5) / 2 - 0.5 (clamped at the border).
    mask = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(4, 1)[None]
    out = resize(mask, 8)
    expected = torch.tensor([0, 0, 0, 0.25, 0.75, 1, 1, 1])
    assert out.shape == (1, 8, 8)
    torch.testing.assert_close(out[0], expected.repeat(8, 1), rtol=0, atol=1e-6)


def test_resize_downsampling_is_antialiased() -> None:
    # Columns 1,0,0,0 repeated: a 4x triangle filter (support 4 input px each side) gives weight
    # (1.5 + 2.5) / 16 = 1/4 to the ones at interior outputs; plain bilinear would read 0.
    stripes = torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(4)
    out = resize(stripes.repeat(16, 1)[None], 4)
    torch.testing.assert_close(out[0, :, 1:3], torch.full((4, 2), 0.25), rtol=0, atol=1e-6)


def test_augment_moves_image_and_mask_together(tmp_path: Path) -> None:
    image, mask = _ramp_pair(48, 64)
    _write(tmp_path, "r", image, mask)
    ds = FolderDataset(tmp_path, augment=True)
    flipped, kept, shapes = 0, 0, set()
    for seed in range(24):
        torch.manual_seed(seed)
        item = ds[0]
        torch.manual_seed(seed)
        again = ds[0]
        torch.testing.assert_close(item["image"], again["image"], rtol=0, atol=0)
        red, m = item["image"][0], item["mask"][0]
        torch.testing.assert_close(red, m, rtol=0, atol=1e-6)
        shapes.add(tuple(m.shape))
        centre = m[m.shape[0] // 2]
        if centre[2] > centre[-3]:
            flipped += 1
        else:
            kept += 1
        assert item["size"].tolist() == [48, 64]
    assert flipped > 0 and kept > 0
    assert len(shapes) > 1 and all(h <= 48 and w <= 64 for h, w in shapes)


def test_size_mismatch_names_both_files(tmp_path: Path) -> None:
    pair = _write(tmp_path, "x", np.zeros((4, 6, 3), np.uint8), np.zeros((4, 5), np.uint8))
    ds = FolderDataset(None, pairs=[pair], image_size=8)
    with pytest.raises(DensecalInputError) as info:
        ds[0]
    assert str(pair.image) in str(info.value) and str(pair.mask) in str(info.value)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DensecalInputError, match="image_size"):
        FolderDataset(tmp_path, image_size=0)
    with pytest.raises(DensecalInputError, match="root"):
        FolderDataset(None)


def test_split_indices() -> None:
    train, val = split_indices(10, 0.3, seed=4)
    assert len(val) == 3 and sorted(train + val) == list(range(10))
    assert (train, val) == split_indices(10, 0.3, seed=4)
    assert any(split_indices(10, 0.3, seed=s)[1] != val for s in range(5, 10))
    assert split_indices(5, 0.0, seed=0) == ([0, 1, 2, 3, 4], [])
    assert len(split_indices(3, 0.01, seed=0)[1]) == 1
    assert len(split_indices(3, 0.99, seed=0)[0]) == 1
    for n, fraction in [(0, 0.1), (5, 1.0), (5, -0.1), (1, 0.5)]:
        with pytest.raises(DensecalInputError):
            split_indices(n, fraction, seed=0)
