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
    train = make_ambiguity_split("train", SMALL)
    assert train[0][0] == "train_0000"
    assert all(np.array_equal(lab, base) for _, _, lab, base in make_ambiguity_split("test",
                                                                                     SMALL))
    for _, _, lab, base in train:
        assert np.isin(lab[lab != base], DEFAULT_SPEC.twins).all()
    again = make_ambiguity_split("train", SMALL)
    assert all(np.array_equal(a[2], b[2]) and np.array_equal(a[1], b[1])
               for a, b in zip(train, again, strict=True))


def test_write_dataset_and_cli(tmp_path: Path) -> None:
    folders = write_ambiguity_dataset(tmp_path / "amb", SMALL)
    assert sorted(folders) == ["test", "train", "val"]
    manifest = json.loads((tmp_path / "amb" / "ambiguity.json").read_text())
    assert AmbiguitySpec.from_dict(manifest) == DEFAULT_SPEC
    assert (tmp_path / "amb" / "README.md").read_text().startswith("# densecal ambiguity")
    masks = sorted((folders["train"] / "masks").glob("*.png"))
    assert [p.stem for p in masks] == [f"train_{i:04d}" for i in range(6)]
    expected = make_ambiguity_split("train", SMALL)
    for path, (_, _, label, _) in zip(masks, expected, strict=True):
        assert np.array_equal(read_label(path), label)
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
