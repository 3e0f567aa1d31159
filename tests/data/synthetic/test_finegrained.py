"""The fine-grained demo and the single-label classification folder reader."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from densecal.data.classification import read_classification_folder
from densecal.data.readers import read_mask
from densecal.data.synthetic.finegrained import (
    FineGrainedConfig,
    make_finegrained_split,
    write_finegrained_dataset,
)
from densecal.errors import DensecalInputError

CONFIG = FineGrainedConfig(size=32, n_train=30, n_val=4, n_test=4, misleading_fraction=0.2)


def test_misleading_images_are_injected_as_recorded() -> None:
    train = make_finegrained_split("train", CONFIG)
    bad = [s for s in train if s.reason]
    assert len(bad) == 6  # round(30 * 0.2)
    for s in train:
        assert s.image.shape == (32, 32, 3) and s.mask.shape == (32, 32)
        if s.reason == "wrong_label":
            assert s.label != s.garment_class
        else:
            assert s.label == s.garment_class
        if s.reason == "no_garment":
            assert not s.mask.any()
    clean_area = np.mean([s.mask.mean() for s in train if not s.reason])
    for s in train:
        if s.reason == "tiny_garment":
            assert s.mask.mean() < clean_area / 4
    assert not any(s.reason for s in make_finegrained_split("test", CONFIG))


def test_generation_is_deterministic() -> None:
    a, b = make_finegrained_split("val", CONFIG), make_finegrained_split("val", CONFIG)
    assert len(a) == len(b) == 4
    assert all(np.array_equal(x.image, y.image) and x.label == y.label
               for x, y in zip(a, b, strict=True))
    with pytest.raises(DensecalInputError, match="split"):
        make_finegrained_split("ood", CONFIG)
    with pytest.raises(DensecalInputError, match="classes"):
        FineGrainedConfig(classes=(6,))


def test_seg_split_is_clean_and_holds_empty_and_tiny_scenes() -> None:
    config = FineGrainedConfig(size=32, n_train=30, n_val=4, n_test=4, n_seg=200,
                               seg_tiny_fraction=0.25, seg_empty_fraction=0.3)
    seg = make_finegrained_split("seg", config)
    assert [s.name for s in seg[:2]] == ["seg_0000", "seg_0001"]
    scenes = [s.scene for s in seg]
    assert not any(s.reason for s in seg)
    assert all(s.label == s.garment_class for s in seg)
    # binomial(200, p): 0.3 +- 4 sd and 0.25 +- 4 sd
    assert abs(scenes.count("no_garment") / 200 - 0.3) < 4 * (0.3 * 0.7 / 200) ** 0.5
    assert abs(scenes.count("tiny_garment") / 200 - 0.25) < 4 * (0.25 * 0.75 / 200) ** 0.5
    full = np.mean([s.mask.mean() for s in seg if s.scene == "garment"])
    for s in seg:
        assert s.mask.any() == (s.scene != "no_garment")
        if s.scene == "tiny_garment":
            assert s.mask.mean() < full / 4
    # adding the seg split leaves the three others as they were
    train = make_finegrained_split("train", CONFIG)
    again = make_finegrained_split("train", config.__class__(**{
        **{f: getattr(CONFIG, f) for f in ("size", "n_train", "n_val", "n_test",
                                           "misleading_fraction")}, "n_seg": 50}))
    assert all(np.array_equal(a.image, b.image) and a.reason == b.reason
               for a, b in zip(train, again, strict=True))
    assert [s.scene for s in train] == [r if r in ("tiny_garment", "no_garment") else "garment"
                                        for r in (s.reason for s in train)]
    with pytest.raises(DensecalInputError, match="seg_empty_fraction"):
        FineGrainedConfig(seg_tiny_fraction=0.6, seg_empty_fraction=0.5)
    with pytest.raises(DensecalInputError, match="n_seg"):
        FineGrainedConfig(n_seg=-1)


def test_written_folder_reads_back(tmp_path: Path) -> None:
    folders = write_finegrained_dataset(tmp_path, CONFIG)
    samples = make_finegrained_split("train", CONFIG)
    folder = read_classification_folder(folders["train"])
    assert folder.classes == ("Shirt", "T-shirt/top", "Pullover", "Coat")
    assert folder.class_ids.tolist() == [s.label for s in samples]
    assert not folder.multilabel
    with open(folders["train"] / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["reason"] for r in rows] == [s.reason for s in samples]
    assert [int(r["misleading"]) for r in rows] == [int(bool(s.reason)) for s in samples]
    assert [r["scene"] for r in rows] == [s.scene for s in samples]
    assert set(folders) == {"train", "val", "test"}
    mask = read_mask(folders["train"] / "masks" / f"{samples[0].name}.png")
    np.testing.assert_allclose(mask, samples[0].mask, atol=0.5 / 255 + 1e-6)


def test_classification_reader_errors(tmp_path: Path) -> None:
    write_finegrained_dataset(tmp_path, FineGrainedConfig(size=16, n_train=3, n_val=0,
                                                          n_test=0))
    root = tmp_path / "train"
    labels = (root / "labels.csv").read_text()
    (root / "labels.csv").write_text(labels.replace("name,label", "file,class"))
    with pytest.raises(DensecalInputError, match="header"):
        read_classification_folder(root)
    (root / "labels.csv").write_text(labels + "ghost,Coat\n")
    with pytest.raises(DensecalInputError, match="ghost"):
        read_classification_folder(root)
    (root / "labels.csv").write_text(labels.replace("Coat", "Hat").replace("Shirt", "Hat")
                                     .replace("Pullover", "Hat").replace("T-shirt/top", "Hat"))
    with pytest.raises(DensecalInputError, match="Hat"):
        read_classification_folder(root)
    (root / "classes.txt").unlink()
    assert read_classification_folder(root).classes == ("Hat",)


def test_cli_classes_and_seg_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from densecal.cli.main import main

    main(["data", "finegrained", "--out", str(tmp_path / "fg"), "--size", "16", "--n-train", "4",
          "--n-val", "1", "--n-test", "1", "--n-seg", "5", "--classes", "distinct"])
    seg = read_classification_folder(tmp_path / "fg" / "seg")
    assert seg.classes == ("T-shirt/top", "Trouser", "Bag", "Ankle boot")
    assert len(seg.names) == 5 and (tmp_path / "fg" / "seg" / "masks").is_dir()
    main(["data", "finegrained", "--out", str(tmp_path / "ids"), "--size", "16", "--n-train",
          "2", "--n-val", "0", "--n-test", "0", "--classes", "3,7"])
    assert read_classification_folder(tmp_path / "ids" / "train").classes == ("Dress", "Sneaker")
    assert not (tmp_path / "ids" / "seg").exists()
    capsys.readouterr()
    for bad, option in ((["--classes", "shirts"], "--classes"),
                        (["--seg-tiny", "0.7", "--seg-empty", "0.7"], "seg_empty_fraction")):
        with pytest.raises(SystemExit) as info:
            main(["data", "finegrained", "--out", str(tmp_path / "bad"), *bad])
        err = capsys.readouterr().err.strip().splitlines()
        assert info.value.code == 2 and len(err) == 1 and option in err[0], err
        assert not (tmp_path / "bad").exists()
