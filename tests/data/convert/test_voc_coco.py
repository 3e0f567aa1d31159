"""VOC 2007 and COCO 2014 parsers on tiny files written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densecal.data.classification import ClassificationDataset, read_classification_labels
from densecal.data.convert.coco import convert_coco, read_coco_labels
from densecal.data.convert.voc import VOC_CLASSES, convert_voc, read_voc_labels
from densecal.errors import DensecalInputError


def _xml(objects: list[tuple[str, int]]) -> str:
    body = "".join(f"<object><name>{n}</name><difficult>{d}</difficult></object>"
                   for n, d in objects)
    return f"<annotation><filename>x.jpg</filename>{body}</annotation>"


def _voc(root: Path) -> Path:
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "JPEGImages").mkdir()
    images = {
        "000001": [("dog", 0), ("person", 1)],               # dog 1, person difficult
        "000002": [("person", 1), ("person", 0), ("cat", 1)],  # person 1, cat difficult
    }
    (main / "test.txt").write_text("000001\n000002\n")
    for name, objects in images.items():
        (root / "Annotations" / f"{name}.xml").write_text(_xml(objects))
        Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
    code = {(0, "dog"): 1, (0, "person"): 0, (1, "person"): 1, (1, "cat"): 0}
    for cls in VOC_CLASSES:
        lines = [f"{n} {code.get((i, cls), -1)}" for i, n in enumerate(images)]
        (main / f"{cls}_test.txt").write_text("\n".join(lines) + "\n")
    return root


def test_voc_both_sources_agree(tmp_path: Path) -> None:
    root = _voc(tmp_path / "VOC2007")
    labels = read_voc_labels(root, "test")
    assert labels.names == ("000001", "000002") and len(labels.classes) == 20
    dog, person, cat = (VOC_CLASSES.index(c) for c in ("dog", "person", "cat"))
    expected = np.zeros((2, 20), np.int8)
    expected[0, dog], expected[0, person] = 1, 2
    expected[1, person], expected[1, cat] = 1, 2
    assert np.array_equal(labels.matrix, expected)
    assert np.array_equal(read_voc_labels(root, "test", source="imagesets").matrix, expected)


def test_voc_convert(tmp_path: Path) -> None:
    root = _voc(tmp_path / "VOC2007")
    out = convert_voc(root, "test", tmp_path / "folder")
    assert (out / "images" / "000001.jpg").is_file()
    assert np.array_equal(read_classification_labels(out).matrix, read_voc_labels(root, "test")
                          .matrix)
    assert ClassificationDataset(out)[1][2].max().item() == 2


def test_voc_errors(tmp_path: Path) -> None:
    root = _voc(tmp_path / "VOC2007")
    with pytest.raises(DensecalInputError, match=r"trainval\.txt"):
        read_voc_labels(root, "trainval")
    with pytest.raises(DensecalInputError, match="source"):
        read_voc_labels(root, "test", source="xml")
    (root / "Annotations" / "000002.xml").write_text(_xml([("unicorn", 0)]))
    with pytest.raises(DensecalInputError, match="unknown class 'unicorn'"):
        read_voc_labels(root, "test")
    (root / "Annotations" / "000002.xml").write_text("<annotation>")
    with pytest.raises(DensecalInputError, match="not valid XML"):
        read_voc_labels(root, "test")


def _coco(path: Path) -> Path:
    data = {
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"},
                       {"id": 3, "name": "car"}],
        "images": [{"id": 7, "file_name": "COCO_val2014_7.jpg"},
                   {"id": 2, "file_name": "COCO_val2014_2.jpg"},
                   {"id": 9, "file_name": "COCO_val2014_9.jpg"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 90},
                        {"id": 2, "image_id": 7, "category_id": 1},
                        {"id": 3, "image_id": 2, "category_id": 3, "iscrowd": 1},
                        {"id": 4, "image_id": 2, "category_id": 3}],
    }
    path.write_text(json.dumps(data))
    return path


def test_coco_labels_in_category_id_order(tmp_path: Path) -> None:
    labels, files = read_coco_labels(_coco(tmp_path / "instances_val2014.json"))
    assert labels.classes == ("person", "car", "toothbrush")
    assert labels.names == ("COCO_val2014_2", "COCO_val2014_7")  # image 9 has no annotation
    assert files == ["COCO_val2014_2.jpg", "COCO_val2014_7.jpg"]
    assert labels.matrix.tolist() == [[0, 1, 0], [1, 0, 1]]
    every, _ = read_coco_labels(tmp_path / "instances_val2014.json", keep_unlabelled=True)
    assert every.matrix.tolist()[-1] == [0, 0, 0]


def test_coco_convert_and_errors(tmp_path: Path) -> None:
    ann = _coco(tmp_path / "instances_val2014.json")
    images = tmp_path / "val2014"
    images.mkdir()
    for i in (2, 7):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(images / f"COCO_val2014_{i}.jpg")
    out = convert_coco(ann, images, tmp_path / "folder")
    assert read_classification_labels(out).classes == ("person", "car", "toothbrush")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [], "annotations": [{"id": 1, "image_id": 1,
                                                              "category_id": 1}],
                               "categories": []}))
    with pytest.raises(DensecalInputError, match="unknown image or category"):
        read_coco_labels(bad)
    bad.write_text("{")
    with pytest.raises(DensecalInputError, match="not valid JSON"):
        read_coco_labels(bad)
    with pytest.raises(DensecalInputError, match="no such file"):
        convert_coco(ann, tmp_path / "nowhere", tmp_path / "f2")
