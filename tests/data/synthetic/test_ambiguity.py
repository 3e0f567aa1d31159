"""Tests of densecal.data.synthetic.ambiguity: flip frequencies, mode enumeration, dataset files."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from densecal.cli.data import ambiguous_data
from densecal.data.readers import read_label
from densecal.data.synthetic.ambiguity import (
    DEFAULT_SPEC,
    AmbiguityConfig,
    AmbiguitySpec,
    FlipTransform,
    apply_flips,
    enumerate_modes,
    make_ambiguity_split,
    write_ambiguity_dataset,
)
from densecal.errors import DensecalInputError

SMALL = AmbiguityConfig(size=24, n_train=6, n_val=2, n_test=3, seed=1)


def test_default_spec_probabilities() -> None:
    assert [Fraction(p).limit_denominator(100) for p in DEFAULT_SPEC.probabilities] == [
        Fraction(k, 17) for k in (8, 7, 6, 5, 4)]
    assert DEFAULT_SPEC.flips[1] == (11, 8 / 17)


def test_enumerate_modes_all_five_classes() -> None:
    label = np.array([[1, 2, 5], [8, 9, 0]], dtype=np.uint8)
    modes = enumerate_modes(label, DEFAULT_SPEC)
    assert len(modes) == 32
    assert sum(p for _, p in modes) == pytest.approx(1.0, abs=1e-15)
    assert len({m.tobytes() for m, _ in modes}) == 32
    everything = [p for m, p in modes if (m[label > 0] > 10).all()]
    assert everything == [pytest.approx(8 * 7 * 6 * 5 * 4 / 17**5, rel=1e-14)]
    assert modes[0][0].tolist() == label.tolist()


def test_enumerate_modes_only_present_classes() -> None:
    modes = enumerate_modes(np.array([[0, 3, 9]]), DEFAULT_SPEC)  # 3 is not flippable
    assert [(m.tolist(), p) for m, p in modes] == [([[0, 3, 9]], 1 - 4 / 17),
                                                   ([[0, 3, 15]], 4 / 17)]


def test_apply_flips_frequencies_and_whole_class() -> None:
    label = np.array([[1, 1, 2], [5, 8, 9]], dtype=np.uint8)
    rng = np.random.default_rng(0)
    counts = np.zeros(5)
    n = 4000
    for _ in range(n):
        out = apply_flips(label, DEFAULT_SPEC, rng)
        for k, (c, t) in enumerate(zip(DEFAULT_SPEC.classes, DEFAULT_SPEC.twins, strict=True)):
            values = set(out[label == c].tolist())
            assert values in ({c}, {t})  # relabelled as a whole
            counts[k] += values == {t}
    # Binomial sd <= 0.008 at n = 4000; 5 sd tolerance
    assert counts / n == pytest.approx(DEFAULT_SPEC.probabilities, abs=0.04)


def test_splits_flip_train_only_and_are_deterministic() -> None:
    frozen = AmbiguityConfig(size=24, n_train=6, n_val=2, n_test=3, seed=1, frozen_flips=True)
    train = make_ambiguity_split("train", frozen)
    assert train[0][0] == "train_0000"
    assert any(not np.array_equal(lab, base) for _, _, lab, base in train)
    assert all(np.array_equal(lab, base) for _, _, lab, base in make_ambiguity_split("test",
                                                                                     SMALL))
    for _, _, lab, base in train:
        assert np.isin(lab[lab != base], DEFAULT_SPEC.twins).all()
    again = make_ambiguity_split("train", frozen)
    assert all(np.array_equal(a[2], b[2]) and np.array_equal(a[1], b[1])
               for a, b in zip(train, again, strict=True))
    # the default writes base masks everywhere (flips are redrawn at training), same scenes
    plain = make_ambiguity_split("train", SMALL)
    assert all(np.array_equal(lab, base) for _, _, lab, base in plain)
    assert all(np.array_equal(a[1], b[1]) and np.array_equal(a[3], b[3])
               for a, b in zip(train, plain, strict=True))


def test_flip_transform_redraws_whole_classes_at_their_probabilities() -> None:
    """4,000 seeded loads of a map holding all five classes: each class flips as a whole, with
    its probability (sd of a share: at most sqrt(0.25 / 4000) = 0.0079)."""
    import torch

    label = np.array([[1, 1, 2], [5, 8, 9], [0, 9, 3]], np.int64)
    transform = FlipTransform(DEFAULT_SPEC)
    flips = np.zeros(5)
    for i in range(4000):
        torch.manual_seed(i)
        out = transform(label)
        for k, (cls, (twin, _)) in enumerate(DEFAULT_SPEC.flips.items()):
            assert len(set(out[label == cls].tolist())) == 1  # whole class
            flips[k] += out[label == cls][0] == twin
        assert out[0, 0] == out[0, 1] and out[2, 2] == 3 and out[2, 0] == 0
    assert flips / 4000 == pytest.approx(DEFAULT_SPEC.probabilities, abs=4 * 0.0079)
    torch.manual_seed(7)
    first = transform(label)
    torch.manual_seed(7)
    assert np.array_equal(transform(label), first)  # the seed decides


def test_training_redraws_flips_only_for_base_mask_datasets(tmp_path: Path) -> None:
    from densecal.methods.config import TrainConfig
    from densecal.methods.engine.sampler import SeededItems
    from densecal.methods.segmentation.training import folder_datasets

    redrawn = write_ambiguity_dataset(tmp_path / "redrawn", SMALL)
    frozen = write_ambiguity_dataset(tmp_path / "frozen", AmbiguityConfig(
        size=24, n_train=6, n_val=2, n_test=3, seed=1, frozen_flips=True))
    for folders, expected in ((redrawn, "base"), (frozen, "flipped")):
        manifest = json.loads((folders["train"].parent / "ambiguity.json").read_text())
        assert manifest["train_masks"] == expected
    config = TrainConfig(method="ce", num_classes=16, data=str(redrawn["train"]),
                         val_data=str(redrawn["val"]), image_size=24)
    train, val = folder_datasets(config)
    assert isinstance(train.label_transform, FlipTransform)
    assert isinstance(val.label_transform, FlipTransform)
    loads = SeededItems(train, seed=0)
    by_epoch = [loads[(epoch, 0)]["mask"] for epoch in range(12)]
    assert torch_equal(loads[(3, 0)]["mask"], by_epoch[3])  # reproducible per (epoch, image)
    assert len({tuple(m.flatten().tolist()) for m in by_epoch}) > 1  # redrawn across epochs
    config = TrainConfig(method="ce", num_classes=16, data=str(frozen["train"]),
                         val_data=str(frozen["val"]), image_size=24)
    assert folder_datasets(config)[0].label_transform is None


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_write_dataset_and_cli(tmp_path: Path) -> None:
    folders = write_ambiguity_dataset(tmp_path / "amb", SMALL)
    assert sorted(folders) == ["test", "train", "val"]
    manifest = json.loads((tmp_path / "amb" / "ambiguity.json").read_text())
    assert AmbiguitySpec.from_dict(manifest) == DEFAULT_SPEC
    assert (tmp_path / "amb" / "README.md").read_text().startswith("# densecal ambiguity")
    masks = sorted((folders["train"] / "masks").glob("*.png"))
    assert [p.stem for p in masks] == [f"train_{i:04d}" for i in range(6)]
    expected = make_ambiguity_split("train", SMALL)
    for path, (_, _, label, base) in zip(masks, expected, strict=True):
        assert np.array_equal(read_label(path), label) and np.array_equal(label, base)
    app = typer.Typer()
    app.command()(ambiguous_data)
    result = CliRunner().invoke(app, ["--out", str(tmp_path / "cli"), "--size", "24",
                                      "--n-train", "2", "--n-val", "1", "--n-test", "1"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "cli" / "val" / "images").glob("*.png"))) == 1


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(DensecalInputError, match="split"):
        make_ambiguity_split("ood", SMALL)
    with pytest.raises(DensecalInputError, match="spec"):
        AmbiguitySpec((1, 2), (2, 3), (0.5, 0.5), 16)
    with pytest.raises(DensecalInputError, match="size"):
        AmbiguityConfig(size=4)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DensecalInputError, match="not a folder"):
        write_ambiguity_dataset(tmp_path / "file", SMALL)


def test_scenes_draw_only_the_pool_classes() -> None:
    """By default every garment is flippable; ``garment_classes`` widens the pool."""
    base = np.stack([s[3] for s in make_ambiguity_split("test", SMALL)])
    assert set(np.unique(base).tolist()) <= {0, *DEFAULT_SPEC.classes}
    assert SMALL.pool_classes == (0, 1, 4, 7, 8)
    wide = AmbiguityConfig(size=24, n_test=20, seed=1, garment_classes=(3, 6))
    base = np.stack([s[3] for s in make_ambiguity_split("test", wide)])
    assert set(np.unique(base).tolist()) == {0, 4, 7}
    with pytest.raises(DensecalInputError, match="garment_classes"):
        AmbiguityConfig(garment_classes=(3, 3))
