"""Single-label classification folder datasets: ``DIR/images/NAME.png`` and ``DIR/labels.csv``.

Layout (the convention shared with the multi-label reader)::

    DIR/images/NAME.png     RGB images (any extension read by densecal.data.readers)
    DIR/labels.csv          header ``name,label``; one row per image, label = class name
    DIR/classes.txt         optional: one class name per line, fixes the class order

Without ``classes.txt`` the classes are the sorted distinct label names. ``name`` is the image's
file stem. Extra files (``masks/``, ``manifest.csv``) are ignored here.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from densecal.atomic import staged_directory
from densecal.data.readers import IMAGE_EXTENSIONS, read_image
from densecal.data.transforms import image_to_tensor, resize
from densecal.errors import input_error

__all__ = [
    "ClassificationDataset",
    "ClassificationFolder",
    "read_classification_folder",
    "write_classification_folder",
]


@dataclass(frozen=True)
class ClassificationFolder:
    """The index of a single-label classification folder.

    Attributes:
        root: the dataset folder.
        classes: class names; index ``k`` is class id ``k``.
        names: image stems, in ``labels.csv`` order.
        labels: ``(N,)`` int64 class ids in ``0..len(classes)-1``.
        paths: image file of each name.
    """

    root: Path
    classes: tuple[str, ...]
    names: tuple[str, ...]
    labels: np.ndarray
    paths: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, indices: Sequence[int]) -> ClassificationFolder:
        """The same folder restricted to ``indices`` (class list unchanged)."""
        idx = list(indices)
        return ClassificationFolder(self.root, self.classes, tuple(self.names[i] for i in idx),
                                    self.labels[idx], tuple(self.paths[i] for i in idx))


def _read_rows(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise input_error(path, "no such file (expected a 'name,label' CSV)")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or [c.strip() for c in rows[0]] != ["name", "label"]:
        raise input_error(path, "header must be 'name,label' (single-label dataset)")
    out: list[tuple[str, str]] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise input_error(path, f"line {line}: expected 'name,label', got {row}")
        out.append((row[0].strip(), row[1].strip()))
    if not out:
        raise input_error(path, "lists no images")
    return out


def _image_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise input_error(folder, "no such folder (expected DIR/images/NAME.png)")
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            files.setdefault(path.stem, path)
    return files


def read_classification_folder(root: str | Path) -> ClassificationFolder:
    """Index a single-label classification folder (see the module docstring).

    Args:
        root: the dataset folder.

    Returns:
        A :class:`ClassificationFolder`.

    Raises:
        DensecalInputError: missing ``images/`` or ``labels.csv``, a wrong header, a duplicate
            name, a name without an image, or a label absent from ``classes.txt``.
    """
    root = Path(root)
    if not root.is_dir():
        raise input_error(root, "no such dataset folder")
    rows = _read_rows(root / "labels.csv")
    classes_file = root / "classes.txt"
    if classes_file.is_file():
        classes = tuple(c.strip() for c in classes_file.read_text(encoding="utf-8").splitlines()
                        if c.strip())
        if len(set(classes)) != len(classes) or not classes:
            raise input_error(classes_file, "must list distinct class names, one per line")
    else:
        classes = tuple(sorted({label for _, label in rows}))
    index = {c: k for k, c in enumerate(classes)}
    files = _image_files(root / "images")
    names, labels, paths = [], [], []
    for name, label in rows:
        if label not in index:
            raise input_error(root / "labels.csv", f"{name}: class {label!r} is not in "
                                                   "classes.txt")
        if name not in files:
            raise input_error(root / "images", f"no image for {name!r} listed in labels.csv")
        names.append(name)
        labels.append(index[label])
        paths.append(files[name])
    if len(set(names)) != len(names):
        raise input_error(root / "labels.csv", "lists an image name twice")
    return ClassificationFolder(root, classes, tuple(names), np.asarray(labels, np.int64),
                                tuple(paths))


class ClassificationDataset(Dataset):
    """``(image, label)`` pairs of a classification folder, resized for training.

    Args:
        folder: the indexed folder (or a subset of it).
        image_size: images are resized (bilinear, antialiased) to ``image_size`` squared.
        augment: random horizontal flips (the only augmentation: garments are left/right
            symmetric, textures too).

    Items are ``(image (3, S, S) float32 in [0, 1], label int64 scalar tensor, index)``.
    """

    def __init__(self, folder: ClassificationFolder, image_size: int, *,
                 augment: bool = False) -> None:
        self.folder = folder
        self.image_size = image_size
        self.augment = augment

    @property
    def names(self) -> tuple[str, ...]:
        """Image names, in dataset order."""
        return self.folder.names

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image = resize(image_to_tensor(read_image(self.folder.paths[i])), self.image_size)
        if self.augment and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, torch.tensor(int(self.folder.labels[i])), i


def write_classification_folder(root: str | Path, samples: Sequence[tuple[str, np.ndarray, int]],
                                classes: Sequence[str],
                                masks: Sequence[np.ndarray] | None = None,
                                extra_files: dict[str, str] | None = None) -> Path:
    """Write a single-label classification folder atomically (staged, then moved into place).

    Args:
        root: destination folder (created; files of the same names are replaced).
        samples: ``(name, image (H, W, 3) uint8, class id)`` triples.
        classes: class names, written to ``classes.txt`` in this order.
        masks: optional ``(H, W)`` masks in [0, 1], one per sample, written to
            ``masks/NAME.png`` as ``round(255 * mask)``.
        extra_files: more text files to write at the root (``{file name: content}``).

    Returns:
        ``root``.

    Raises:
        DensecalInputError: a class id outside ``classes`` or a mask count mismatch.
    """
    if masks is not None and len(masks) != len(samples):
        raise input_error("masks", f"{len(masks)} masks for {len(samples)} samples")
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["name", "label"])
    root = Path(root)
    with staged_directory(root) as stage:
        (stage / "images").mkdir()
        if masks is not None:
            (stage / "masks").mkdir()
        for i, (name, image, label) in enumerate(samples):
            if not 0 <= label < len(classes):
                raise input_error(name, f"class id {label} outside 0..{len(classes) - 1}")
            Image.fromarray(image).save(stage / "images" / f"{name}.png")
            writer.writerow([name, classes[label]])
            if masks is not None:
                mask8 = np.rint(np.clip(masks[i], 0, 1).astype(np.float64) * 255).astype(np.uint8)
                Image.fromarray(mask8).save(stage / "masks" / f"{name}.png")
        (stage / "labels.csv").write_text(table.getvalue(), encoding="utf-8")
        (stage / "classes.txt").write_text("".join(f"{c}\n" for c in classes),
                                          encoding="utf-8")
        for file_name, content in (extra_files or {}).items():
            (stage / file_name).write_text(content, encoding="utf-8")
    return root
