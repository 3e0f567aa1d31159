"""Classification folders (both kinds) and multi-label garment scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from densecal.data.classification import (
    ClassificationDataset,
    read_classification_folder,
    read_classification_labels,
    write_classification_folder,
)
from densecal.data.synthetic.fashion_mnist import CLASS_NAMES
from densecal.data.synthetic.multilabel import (
    MULTILABEL_CLASSES,
    Difficulty,
    garment_labels,
    write_multilabel_scenes,
)
from densecal.data.synthetic.multiscene import GarmentInfo
from densecal.errors import DensecalInputError


def _garment(cls: int, area: float = 0.1, visible: float = 1.0, contrast: float = 0.3,
             pixels: int = 10) -> GarmentInfo:
    return GarmentInfo(cls=cls, bbox=(0, 0, 1, 1), area_fraction=area,
                       visible_fraction=visible, labelled_pixels=pixels, contrast=contrast)


def test_garment_labels_difficulty_rules() -> None:
    d = Difficulty()
    labels = garment_labels((
        _garment(0),                          # easy -> 1
        _garment(1, area=0.03, visible=0.5),  # visible area 0.015 < 0.02 -> 2
        _garment(2, visible=0.3),             # occluded -> 2
        _garment(3, contrast=0.1),            # low contrast -> 2
        _garment(4, pixels=0),                # owns no labelled pixel -> not labelled
        _garment(5, visible=0.3), _garment(5),  # one easy garment of the class -> 1
    ), d)
    assert labels.tolist() == [1, 2, 2, 2, 0, 1, 0, 0, 0, 0]
    assert garment_labels((_garment(3, contrast=0.1),), Difficulty(min_contrast=0.05))[3] == 1


def test_folder_round_trip_and_dataset(tmp_path: Path) -> None:
    images = [np.full((8, 8, 3), v, np.uint8) for v in (0, 255)]
    matrix = np.array([[1, 0, 2], [0, 1, 0]], np.int8)
    write_classification_folder(tmp_path / "d", [("a", images[0]), ("b", images[1])],
                                ["x", "y", "z"], matrix)
    assert (tmp_path / "d" / "labels.csv").read_text().splitlines() == \
        ["name,x,y,z", "a,1,0,2", "b,0,1,0"]
    labels = read_classification_labels(tmp_path / "d")
    assert labels.names == ("a", "b") and labels.classes == ("x", "y", "z")
    assert labels.multilabel and np.array_equal(labels.matrix, matrix)
    ds = ClassificationDataset(tmp_path / "d", image_size=16)
    x, target, raw = ds[0]
    assert x.shape == (3, 16, 16) and x.max().item() == 0.0
    assert target.tolist() == [1.0, 0.0, 1.0]  # difficult is positive in training
    assert raw.tolist() == [1, 0, 2]
    subset = ClassificationDataset(read_classification_folder(tmp_path / "d").subset([1]))
    assert subset.names == ("b",) and subset[0][0].min().item() == 1.0
    assert subset[0][0].shape == (3, 8, 8)  # no image_size: size kept
    with pytest.raises(DensecalInputError, match="multi-label"):
        read_classification_labels(tmp_path / "d").class_ids  # noqa: B018


def test_single_label_folder_writer_and_dataset(tmp_path: Path) -> None:
    images = [np.full((4, 4, 3), v, np.uint8) for v in (10, 20, 30)]
    root = write_classification_folder(
        tmp_path / "s", [("a", images[0]), ("b", images[1]), ("c", images[2])], ["cat", "dog"],
        np.array([1, 0, 1]), masks=[np.full((4, 4), 0.5)] * 3, extra_files={"note.txt": "hi"})
    assert (root / "labels.csv").read_text().splitlines() == ["name,label", "a,dog", "b,cat",
                                                              "c,dog"]
    assert (root / "classes.txt").read_text() == "cat\ndog\n"
    assert (root / "note.txt").read_text() == "hi"
    assert np.array_equal(np.array(Image.open(root / "masks" / "a.png")),
                          np.full((4, 4), 128))  # rint(0.5 * 255)
    folder = read_classification_folder(root)
    assert not folder.multilabel and folder.class_ids.tolist() == [1, 0, 1]
    assert folder.subset([2, 0]).names == ("c", "a")
    assert folder.subset([2, 0]).paths == (root / "images" / "c.png", root / "images" / "a.png")
    ds = ClassificationDataset(folder, 8)
    x, target, labels = ds[2]
    assert x.shape == (3, 8, 8) and torch.allclose(x, torch.full_like(x, 30 / 255), atol=1e-6)
    assert target.dtype == torch.int64 and target.shape == () and target.item() == 1
    assert labels.tolist() == [0, 1]
    copied = write_classification_folder(tmp_path / "copy", [("z", root / "images" / "a.png")],
                                         ["cat", "dog"], [0])
    assert (copied / "images" / "z.png").read_bytes() == (root / "images" / "a.png").read_bytes()
    assert read_classification_folder(copied).class_ids.tolist() == [0]


@pytest.mark.parametrize(("labels", "match"), [
    (np.array([2]), "class id 2 outside 0..1"),
    (np.array([0.5]), "integer class ids"),
    (np.array([[3, 0]]), "0, 1 or 2"),
    (np.array([[1, 0, 0]]), "expected shape"),
    (np.zeros((1, 2, 1), int), "dimensions"),
])
def test_writer_refuses_bad_labels(tmp_path: Path, labels: np.ndarray, match: str) -> None:
    sample = [("a", np.zeros((4, 4, 3), np.uint8))]
    with pytest.raises(DensecalInputError, match=match):
        write_classification_folder(tmp_path / "bad", sample, ["cat", "dog"], labels)
    with pytest.raises(DensecalInputError, match="masks"):
        write_classification_folder(tmp_path / "bad", sample, ["cat", "dog"], [0], masks=[])
    assert not (tmp_path / "bad").exists()


def test_single_label_and_classes_order(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("name,label\na,dog\nb,cat\nc,dog\n")
    labels = read_classification_labels(tmp_path)
    assert labels.classes == ("cat", "dog") and not labels.multilabel
    assert labels.matrix.tolist() == [[0, 1], [1, 0], [0, 1]]
    (tmp_path / "classes.txt").write_text("dog\ncat\n")
    assert read_classification_labels(tmp_path).matrix.tolist() == [[1, 0], [0, 1], [1, 0]]
    (tmp_path / "labels.csv").write_text("name,cat,dog\na,1,0\n")
    reordered = read_classification_labels(tmp_path)
    assert reordered.classes == ("dog", "cat") and reordered.matrix.tolist() == [[0, 1]]


@pytest.mark.parametrize(("csv", "match"), [
    ("name,x\na,3\n", "0, 1 or 2"),
    ("name,x\na,yes\n", "0, 1 or 2"),
    ("img,x\na,1\n", "header"),
    ("name,x\na,1\na,0\n", "duplicate"),
    ("name,x,y\na,1\n", "cells"),
])
def test_bad_labels(tmp_path: Path, csv: str, match: str) -> None:
    (tmp_path / "labels.csv").write_text(csv)
    with pytest.raises(DensecalInputError, match=match):
        read_classification_labels(tmp_path)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DensecalInputError, match=r"labels\.csv"):
        read_classification_labels(tmp_path)
    (tmp_path / "labels.csv").write_text("name,x\na,1\n")
    with pytest.raises(DensecalInputError, match="no image named 'a'"):
        ClassificationDataset(tmp_path)
    (tmp_path / "labels.csv").write_text("name,x\n\n")
    with pytest.raises(DensecalInputError, match="lists no images"):
        read_classification_labels(tmp_path)


def test_scenes_written_deterministically(tmp_path: Path) -> None:
    kwargs = {"n_train": 3, "n_val": 1, "n_test": 2, "size": 32, "seed": 5}
    a = write_multilabel_scenes(tmp_path / "a", **kwargs)
    b = write_multilabel_scenes(tmp_path / "b", **kwargs)
    for split in ("train", "val", "test"):
        assert (a[split] / "labels.csv").read_text() == (b[split] / "labels.csv").read_text()
        assert (a[split] / "images" / f"{split}_0000.png").read_bytes() == \
            (b[split] / "images" / f"{split}_0000.png").read_bytes()
    labels = read_classification_labels(a["train"])
    assert labels.classes == tuple(CLASS_NAMES[c] for c in MULTILABEL_CLASSES)
    assert labels.matrix.shape == (3, 6)
    assert (labels.matrix > 0).sum(1).min() >= 1  # every scene shows a garment
    x, target, _ = ClassificationDataset(a["test"])[1]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and target.shape == (6,)
    every = write_multilabel_scenes(tmp_path / "all", **kwargs, classes=None)
    assert read_classification_labels(every["train"]).classes == CLASS_NAMES
    with pytest.raises(DensecalInputError, match="already exists"):
        write_multilabel_scenes(tmp_path / "a", **kwargs)


def test_scenes_of_a_class_subset(tmp_path: Path) -> None:
    """``classes`` picks the garment pool and the label columns, in the given order."""
    out = write_multilabel_scenes(tmp_path / "s", n_train=12, n_val=0, n_test=0, size=32,
                                  seed=2, classes=(8, 1))
    labels = read_classification_labels(out["train"])
    assert labels.classes == ("Bag", "Trouser") and labels.matrix.shape == (12, 2)
    assert (labels.matrix > 0).sum(1).min() >= 1  # only bags and trousers are drawn
    for bad in ((), (1, 1), (10,)):
        with pytest.raises(DensecalInputError, match="classes"):
            write_multilabel_scenes(tmp_path / f"bad{len(bad)}", classes=bad)
