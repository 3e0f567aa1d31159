"""MS-COCO 2014 instances as multi-label classification targets.

Reads ``annotations/instances_{train,val}2014.json``: the 80 categories are ordered by their
category id (ids run 1..90 with gaps), and an image is positive for a category when it holds at
least one annotation of it (crowd annotations included). COCO has no "difficult" flag, so the
values are 0/1 only. Images without any annotation are left out by default (the usual 82,081 /
40,137 split of the multi-label literature keeps only labelled images).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from densecal._checks import check_out_apart
from densecal.data.classification import ClassificationLabels, write_classification_folder
from densecal.errors import input_error

__all__ = ["convert_coco", "read_coco_labels"]


def _load(path: Path) -> dict:
    if not path.is_file():
        raise input_error(path, "no such file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise input_error(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
        raise input_error(path, "expected a COCO instances file (images, annotations, "
                                "categories)")
    return data


def read_coco_labels(annotation_file: str | Path, *,
                     keep_unlabelled: bool = False) -> tuple[ClassificationLabels, list[str]]:
    """Multi-label targets of a COCO instances file.

    Args:
        annotation_file: ``instances_train2014.json`` or ``instances_val2014.json``.
        keep_unlabelled: keep images without annotations (all-zero rows).

    Returns:
        ``(labels, file_names)``:
        :class:`~densecal.data.classification.ClassificationLabels` with names = image file
        stems (rows sorted by image id) and ``(N, 80)`` values in {0, 1}; ``file_names``
        the images' ``file_name`` fields in the same order.

    Raises:
        DensecalInputError: missing or malformed file, an annotation of an unknown image or
            category.
    """
    path = Path(annotation_file)
    data = _load(path)
    categories = sorted(data["categories"], key=lambda c: int(c["id"]))
    column = {int(c["id"]): k for k, c in enumerate(categories)}
    images = sorted(data["images"], key=lambda im: int(im["id"]))
    row = {int(im["id"]): i for i, im in enumerate(images)}
    matrix = np.zeros((len(images), len(categories)), dtype=np.int8)
    for ann in data["annotations"]:
        image_id, category_id = int(ann["image_id"]), int(ann["category_id"])
        if image_id not in row or category_id not in column:
            raise input_error(path, f"annotation {ann.get('id')} names an unknown image or "
                                    f"category")
        matrix[row[image_id], column[category_id]] = 1
    keep = np.ones(len(images), bool) if keep_unlabelled else matrix.any(1)
    files = [str(im["file_name"]) for im, k in zip(images, keep, strict=True) if k]
    labels = ClassificationLabels(tuple(Path(f).stem for f in files),
                                  tuple(str(c["name"]) for c in categories), matrix[keep], True)
    return labels, files


def convert_coco(annotation_file: str | Path, image_dir: str | Path, out_dir: str | Path, *,
                 keep_unlabelled: bool = False) -> Path:
    """Write a COCO split as a classification folder (images copied as they are).

    Raises:
        DensecalInputError: as :func:`read_coco_labels`, or a missing image file.
    """
    check_out_apart(out_dir, {"--annotations": annotation_file, "--images": image_dir})
    labels, files = read_coco_labels(annotation_file, keep_unlabelled=keep_unlabelled)
    samples = []
    for name, file in zip(labels.names, files, strict=True):
        image = Path(image_dir) / file
        if not image.is_file():
            raise input_error(image, "no such file")
        samples.append((name, image))
    return write_classification_folder(out_dir, samples, list(labels.classes), labels.matrix)
