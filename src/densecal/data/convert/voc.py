"""PASCAL VOC 2007 as multi-label classification targets, with "difficult" flags.

Layout read (the official ``VOCdevkit/VOC2007`` tree)::

    ROOT/ImageSets/Main/{trainval,test}.txt      image ids, one per line
    ROOT/ImageSets/Main/<class>_{trainval,test}.txt  "<id> <1|0|-1>" per line
    ROOT/Annotations/<id>.xml                    <object><name>, <difficult>
    ROOT/JPEGImages/<id>.jpg

Targets follow the folder convention of :mod:`densecal.data.classification`: 1 when the image
has a non-difficult object of the class, 2 when all its objects of that class are difficult (the
``0`` of the per-class ImageSets files), 0 otherwise. Both sources give the same matrix on the
official data; the annotations are the default.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from densecal._checks import check_out_apart
from densecal.data.classification import ClassificationLabels, write_classification_folder
from densecal.errors import input_error

__all__ = ["VOC_CLASSES", "convert_voc", "read_voc_labels"]

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
"""The 20 VOC classes in the devkit's order."""


def _ids(root: Path, split: str) -> list[str]:
    path = root / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        raise input_error(path, "no such file (expected a VOC2007 folder)")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _from_annotation(path: Path) -> np.ndarray:
    if not path.is_file():
        raise input_error(path, "no such file")
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise input_error(path, f"not valid XML ({exc})") from None
    row = np.zeros(len(VOC_CLASSES), dtype=np.int8)
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise input_error(path, f"unknown class {name!r}")
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        k = VOC_CLASSES.index(name)
        value = 2 if difficult else 1
        row[k] = value if row[k] == 0 else min(row[k], value)
    return row


def _from_imagesets(root: Path, split: str, ids: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(ids)}
    matrix = np.zeros((len(ids), len(VOC_CLASSES)), dtype=np.int8)
    code = {"1": 1, "0": 2, "-1": 0}
    for k, cls in enumerate(VOC_CLASSES):
        path = root / "ImageSets" / "Main" / f"{cls}_{split}.txt"
        if not path.is_file():
            raise input_error(path, "no such file")
        for line in path.read_text().splitlines():
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in code or parts[0] not in index:
                raise input_error(path, f"bad line {line!r}")
            matrix[index[parts[0]], k] = code[parts[1]]
    return matrix


def read_voc_labels(root: str | Path, split: str = "trainval", *,
                    source: str = "annotations") -> ClassificationLabels:
    """Multi-label targets of a VOC 2007 split.

    Args:
        root: the ``VOC2007`` folder.
        split: ``trainval``, ``test``, ``train`` or ``val`` (any ``ImageSets/Main/<split>.txt``).
        source: ``"annotations"`` (the XML files) or ``"imagesets"`` (the per-class lists).

    Returns:
        :class:`~densecal.data.classification.ClassificationLabels` with ``(N, 20)`` values in
        {0, 1, 2}, rows in the order of ``<split>.txt``.

    Raises:
        DensecalInputError: missing files, malformed XML or lines, unknown class or source.
    """
    root = Path(root)
    ids = _ids(root, split)
    if source == "annotations":
        rows = [_from_annotation(root / "Annotations" / f"{i}.xml") for i in ids]
        matrix = np.stack(rows) if rows else np.zeros((0, len(VOC_CLASSES)), dtype=np.int8)
    elif source == "imagesets":
        matrix = _from_imagesets(root, split, ids)
    else:
        raise input_error("source", f"expected 'annotations' or 'imagesets', got {source!r}")
    return ClassificationLabels(tuple(ids), VOC_CLASSES, matrix, True)


def convert_voc(root: str | Path, split: str, out_dir: str | Path, *,
                source: str = "annotations") -> Path:
    """Write a VOC 2007 split as a classification folder (JPEGs copied as they are).

    Raises:
        DensecalInputError: as :func:`read_voc_labels`, or a missing ``JPEGImages/<id>.jpg``.
    """
    root = Path(root)
    check_out_apart(out_dir, {"--root": root})
    labels = read_voc_labels(root, split, source=source)
    samples = []
    for name in labels.names:
        image = root / "JPEGImages" / f"{name}.jpg"
        if not image.is_file():
            raise input_error(image, "no such file")
        samples.append((name, image))
    return write_classification_folder(out_dir, samples, list(labels.classes), labels.matrix)
