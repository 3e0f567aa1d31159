"""Demo scenes: determinism, exact soft masks, composite identity, OOD split, folder round trip."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from densecal.data import (
    BACKGROUND_NAMES,
    CLASS_NAMES,
    OOD_TEXTURE_NAMES,
    DemoConfig,
    FolderDataset,
    SceneParams,
    load_garments,
    load_texture,
    make_demo_split,
    make_scene,
    render_scene_layers,
    write_demo_dataset,
)
from densecal.data.synthetic.scene import composite
from densecal.errors import DensecalInputError

SMALL = DemoConfig(size=32, n_train=6, n_val=4, n_test=5, n_ood=3, seed=3)


def test_vendored_subset() -> None:
    vendor = resources.files("densecal.data") / "_vendor"
    total = sum(p.stat().st_size for p in Path(str(vendor)).iterdir() if p.is_file())
    assert total <= 5 * 1024 * 1024
    assert "Zalando" in (vendor / "LICENSE-fashion-mnist.txt").read_text(encoding="utf-8")
    for split, n in (("train", 3000), ("test", 1000)):
        images, labels = load_garments(split)
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, n // 10))
    assert len(CLASS_NAMES) == 10 and CLASS_NAMES[9] == "Ankle boot"
    with pytest.raises(DensecalInputError, match="split"):
        load_garments("val")


def test_backgrounds_and_ood_textures_disjoint() -> None:
    assert not set(BACKGROUND_NAMES) & set(OOD_TEXTURE_NAMES)
    digests = {name: hashlib.sha256(load_texture(name).tobytes()).hexdigest()
               for name in BACKGROUND_NAMES + OOD_TEXTURE_NAMES}
    assert len(set(digests.values())) == len(digests)


@pytest.mark.parametrize("split", ["train", "val", "test", "ood"])
def test_split_deterministic(split: str) -> None:
    first, again = make_demo_split(split, SMALL), make_demo_split(split, SMALL)
    other = make_demo_split(split, replace(SMALL, seed=4))
    assert [s[0] for s in first] == [f"{split}_{i:04d}" for i in range(SMALL.count(split))]
    for (_, image_a, mask_a), (_, image_b, mask_b) in zip(first, again, strict=True):
        assert image_a.shape == (32, 32, 3) and image_a.dtype == np.uint8
        assert mask_a.shape == (32, 32) and mask_a.dtype == np.float32
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(mask_a, mask_b)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other, strict=True))


def test_splits_differ_from_each_other() -> None:
    images = {split: make_demo_split(split, SMALL)[0][1] for split in ("train", "val", "test")}
    assert not np.array_equal(images["train"], images["val"])
    assert not np.array_equal(images["train"], images["test"])


def test_masks_soft_on_edges_and_zero_far_away() -> None:
    samples = make_demo_split("test", DemoConfig(n_test=20))
    for _, _, mask in samples:
        assert mask.min() >= 0 and mask.max() <= 1
        assert ((mask > 0) & (mask < 1)).any()
        assert (mask == 1).any() and (mask == 0).mean() > 0.3
        distance = ndimage.distance_transform_edt(mask < 0.5)
        assert (mask[distance > 3] == 0).all()


def test_composite_identity() -> None:
    garments, _ = load_garments("test")
    backgrounds = [load_texture(name) for name in BACKGROUND_NAMES[:3]]
    params = SceneParams(garment_contrast=(0.5, 0.9))
    for seed in range(5):
        layers = render_scene_layers(np.random.default_rng(seed), garments[seed], backgrounds, 40,
                                     params)
        image, mask = make_scene(np.random.default_rng(seed), garments[seed], backgrounds, 40,
                                 params)
        np.testing.assert_array_equal(mask, layers.alpha)
        np.testing.assert_array_equal(image, composite(layers))
        alpha = layers.alpha.astype(np.float64)[:, :, None]
        expected = alpha * layers.foreground + (1 - alpha) * layers.background
        assert np.abs(image / 255.0 - expected).max() <= 0.5 / 255 + 1e-6
        far = layers.alpha == 0
        np.testing.assert_array_equal(image[far],
                                      np.rint(layers.background[far].astype(np.float64) * 255))


def test_silhouette_fills_holes() -> None:
    ring = np.zeros((28, 28), dtype=np.uint8)
    ring[4:24, 4:24] = 200
    ring[10:18, 10:18] = 0
    params = SceneParams(garment_scale=(1.0, 1.0), max_rotation_deg=0.0)
    layers = render_scene_layers(np.random.default_rng(0), ring, [load_texture("brick")], 28,
                                 params)
    assert layers.alpha.max() == 1.0
    assert (layers.alpha > 0.99).sum() >= 16 * 16


def test_ood_split_has_zero_masks() -> None:
    for _, image, mask in make_demo_split("ood", SMALL):
        assert mask.shape == (32, 32) and not mask.any()
        assert image.std() > 0


def test_bad_config_and_split() -> None:
    with pytest.raises(DensecalInputError, match="split"):
        make_demo_split("holdout", SMALL)
    with pytest.raises(DensecalInputError, match="n_test"):
        DemoConfig(n_test=-1)
    with pytest.raises(DensecalInputError, match="garment_scale"):
        SceneParams(garment_scale=(0.8, 0.4))


def test_write_round_trip_and_rewrite(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    folders = write_demo_dataset(out, SMALL)
    assert set(folders) == {"train", "val", "test", "ood"} and (out / "README.md").is_file()
    for split, folder in folders.items():
        expected = make_demo_split(split, SMALL)
        ds = FolderDataset(folder)
        assert ds.names == [name for name, _, _ in expected]
        for k, (_, image, mask) in enumerate(expected):
            item = ds[k]
            np.testing.assert_array_equal((item["image"] * 255).round().byte().numpy(),
                                          image.transpose(2, 0, 1))
            mask8 = np.rint(mask.astype(np.float64) * 255)
            np.testing.assert_allclose(item["mask"][0].numpy(), mask8 / 255, rtol=0, atol=1e-7)
    smaller = replace(SMALL, n_train=2)
    write_demo_dataset(out, smaller)
    assert FolderDataset(out / "train").names == ["train_0000", "train_0001"]


def test_interrupted_write_leaves_no_half_split(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    original_save = Image.Image.save
    calls = {"n": 0}

    def failing_save(self: Image.Image, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError("disk full")
        original_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_demo_dataset(tmp_path / "demo", SMALL)
    assert not (tmp_path / "demo" / "train").exists()
    assert [p.name for p in tmp_path.iterdir()] in ([], ["demo"])
