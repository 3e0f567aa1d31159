"""Classification folder datasets, single- and multi-label: the one reader/writer of the format.

Layout::

    DIR/images/NAME.png  RGB images (any extension of densecal.data.readers.IMAGE_EXTENSIONS)
    DIR/labels.csv       single-label: header ``name,label``, label = class name
                         multi-label: header ``name,<class 1>,...,<class C>``, cells 0 (absent),
                         1 (present), 2 (present and "difficult": positive in training, ignored
                         by mAP; the PASCAL VOC 2007 convention)
    DIR/classes.txt      optional: one class name per line, fixes the class order (otherwise
                         the sorted label names, single-label, or the header order, multi-label)

``name`` is the image's file stem. Blank CSV lines are skipped and cells are stripped. A
multi-label folder with a single class literally named ``label`` cannot be told from a
single-label folder (it is read as single-label). Extra files (``masks/``, ``manifest.csv``)
are ignored here.

Both kinds are held as an ``(N, C)`` int8 label matrix in {0, 1, 2} (single-label rows are
one-hot); :attr:`ClassificationLabels.class_ids` gives the single-label class ids.
:class:`ClassificationDataset` serves both the single-label classifier
(:mod:`densecal.methods.classify`) and uncertainty distillation (:mod:`densecal.methods.ud`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from densecal.atomic import staged_dataset
from densecal.data.readers import IMAGE_EXTENSIONS, read_image
from densecal.data.transforms import image_to_tensor, resize
from densecal.errors import input_error

__all__ = [
    "ClassificationDataset",
    "ClassificationFolder",
    "ClassificationLabels",
    "read_classification_folder",
    "read_classification_labels",
    "write_classification_folder",
]

CLASSIFICATION_SCHEMA = "densecal.classification-folder/1"
"""Schema of the ``manifest.json`` densecal writes into a classification folder."""

_SINGLE_HEADER = ["name", "label"]


@dataclass(frozen=True)
class ClassificationLabels:
    """The label table of a classification folder (no images).

    Attributes:
        names: image stems, in ``labels.csv`` order.
        classes: class names (the column order of ``matrix``).
        matrix: ``(N, C)`` int8 in {0, 1, 2}; single-label folders: one-hot rows.
        multilabel: whether the table is multi-label.

    Raises:
        DensecalInputError: ``matrix`` is not ``(len(names), len(classes))``.
    """

    names: tuple[str, ...]
    classes: tuple[str, ...]
    matrix: np.ndarray
    multilabel: bool

    def __post_init__(self) -> None:
        if self.matrix.shape != (len(self.names), len(self.classes)):
            raise input_error("matrix", f"expected shape {(len(self.names), len(self.classes))}"
                                        f", got {self.matrix.shape}")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def _source(self) -> str | Path:
        return "labels"

    @property
    def class_ids(self) -> np.ndarray:
        """``(N,)`` int64 class ids in ``0..C-1`` of a single-label table.

        Raises:
            DensecalInputError: the table is multi-label.
        """
        if self.multilabel:
            raise input_error(self._source, "is multi-label; a single-label 'name,label' "
                                            "dataset is needed here")
        return self.matrix.argmax(1).astype(np.int64)

    def subset(self, indices: Sequence[int]) -> ClassificationLabels:
        """The same table restricted to rows ``indices`` (class list unchanged)."""
        idx = list(indices)
        return dataclasses.replace(self, names=tuple(self.names[i] for i in idx),
                                   matrix=self.matrix[idx])


@dataclass(frozen=True)
class ClassificationFolder(ClassificationLabels):
    """An indexed classification folder: the label table plus each image's file.

    Attributes:
        root: the dataset folder.
        paths: image file of each name.
    """

    root: Path
    paths: tuple[Path, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.paths) != len(self.names):
            raise input_error("paths", f"{len(self.paths)} paths for {len(self.names)} names")

    @property
    def _source(self) -> str | Path:
        return self.root / "labels.csv"

    def subset(self, indices: Sequence[int]) -> ClassificationFolder:
        """The same folder restricted to rows ``indices`` (class list unchanged)."""
        idx = list(indices)
        return dataclasses.replace(self, names=tuple(self.names[i] for i in idx),
                                   matrix=self.matrix[idx],
                                   paths=tuple(self.paths[i] for i in idx))


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line number, cells)`` rows of ``labels.csv``, blank lines skipped."""
    if not path.is_file():
        raise input_error(path, "no such file (a classification folder needs labels.csv)")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [(line, [c.strip() for c in row]) for line, row in
                enumerate(csv.reader(handle), start=1)]
    rows = [(line, row) for line, row in rows if any(row)]
    if not rows or len(rows[0][1]) < 2 or rows[0][1][0] != "name":
        raise input_error(path, "header must be 'name,label' (single-label) or "
                                "'name,<class>,...' (multi-label)")
    header, body = rows[0][1], rows[1:]
    if not body:
        raise input_error(path, "lists no images")
    seen: set[str] = set()
    for line, row in body:
        if len(row) != len(header):
            raise input_error(path, f"line {line}: expected {len(header)} cells, got {len(row)}")
        if not row[0]:
            raise input_error(path, f"line {line}: empty image name")
        if row[0] in seen:
            raise input_error(path, f"line {line}: duplicate image name {row[0]!r}")
        seen.add(row[0])
    return header, body


def _read_classes(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    classes = [c.strip() for c in path.read_text(encoding="utf-8").splitlines() if c.strip()]
    if not classes or len(set(classes)) != len(classes):
        raise input_error(path, "must list distinct class names, one per line")
    return classes


def _single_label(path: Path, body: list[tuple[int, list[str]]],
                  fixed: list[str] | None) -> tuple[list[str], np.ndarray]:
    classes = fixed or sorted({row[1] for _, row in body})
    index = {c: k for k, c in enumerate(classes)}
    matrix = np.zeros((len(body), len(classes)), dtype=np.int8)
    for i, (line, (name, label)) in enumerate(body):
        if label not in index:
            raise input_error(path, f"line {line}: class {label!r} of {name!r} is not in "
                                    "classes.txt")
        matrix[i, index[label]] = 1
    return classes, matrix


def _multi_label(path: Path, header: list[str], body: list[tuple[int, list[str]]],
                 fixed: list[str] | None) -> tuple[list[str], np.ndarray]:
    columns = header[1:]
    if not all(columns) or len(set(columns)) != len(columns):
        raise input_error(path, "header needs distinct, non-empty class names")
    if fixed is not None and sorted(fixed) != sorted(columns):
        raise input_error(path.parent / "classes.txt",
                          "does not list the same classes as labels.csv")
    matrix = np.zeros((len(body), len(columns)), dtype=np.int8)
    for i, (line, row) in enumerate(body):
        for k, cell in enumerate(row[1:]):
            if cell not in ("0", "1", "2"):
                raise input_error(path, f"line {line}: multi-label cells must be 0, 1 or 2, "
                                        f"got {cell!r}")
            matrix[i, k] = int(cell)
    classes = fixed or columns
    return classes, matrix[:, [columns.index(c) for c in classes]]


def read_classification_labels(root: str | Path) -> ClassificationLabels:
    """Read ``root/labels.csv`` (and ``root/classes.txt`` if present), either kind.

    Args:
        root: the dataset folder.

    Returns:
        A :class:`ClassificationLabels`.

    Raises:
        DensecalInputError: missing ``labels.csv``, a bad header, no rows, a row with the wrong
            cell count, an empty or duplicate name, a single-label class absent from
            ``classes.txt``, a multi-label cell outside {0, 1, 2}, or a ``classes.txt`` that is
            not distinct names or disagrees with the multi-label header.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / "labels.csv").write_text("name,label\\na,dog\\nb,cat\\n")
        >>> t = read_classification_labels(root)
        >>> t.classes, t.class_ids.tolist(), t.matrix.tolist()
        (('cat', 'dog'), [1, 0], [[0, 1], [1, 0]])
    """
    root = Path(root)
    path = root / "labels.csv"
    header, body = _read_rows(path)
    fixed = _read_classes(root / "classes.txt")
    multilabel = header != _SINGLE_HEADER
    classes, matrix = (_multi_label(path, header, body, fixed) if multilabel
                       else _single_label(path, body, fixed))
    return ClassificationLabels(tuple(row[0] for _, row in body), tuple(classes), matrix,
                                multilabel)


def _image_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                files.setdefault(path.stem, path)
    return files


def read_classification_folder(root: str | Path) -> ClassificationFolder:
    """Index a classification folder of either kind (see the module docstring).

    Args:
        root: the dataset folder.

    Returns:
        A :class:`ClassificationFolder`; when several images share a stem, the first in sorted
        file-name order is used.

    Raises:
        DensecalInputError: ``root`` is not a folder, bad labels (see
            :func:`read_classification_labels`), or a listed name without an image in
            ``root/images``.
    """
    root = Path(root)
    if not root.is_dir():
        raise input_error(root, "no such dataset folder")
    table = read_classification_labels(root)
    files = _image_files(root / "images")
    missing = [name for name in table.names if name not in files]
    if missing:
        raise input_error(root / "images", f"no image named {missing[0]!r} (listed in "
                                           f"labels.csv; {len(missing)} missing)")
    return ClassificationFolder(table.names, table.classes, table.matrix, table.multilabel,
                                root, tuple(files[name] for name in table.names))


class ClassificationDataset(Dataset):
    """Images of a classification folder with their targets, for either kind of folder.

    Items are ``(image, target, labels)``:

    - ``image``: ``(3, S, S)`` float32 in [0, 1], resized (bilinear, antialiased when shrinking,
      :func:`densecal.data.transforms.resize`) when ``image_size`` is given, else ``(3, H, W)``;
    - ``target``: single-label folders: the int64 scalar class id (for cross-entropy);
      multi-label folders: ``(C,)`` float32 in {0, 1}, difficult counted as positive (the
      training convention, for binary cross-entropy);
    - ``labels``: ``(C,)`` int8 in {0, 1, 2}, the folder's row (one-hot for single-label), for
      metrics that ignore difficult entries.

    Args:
        folder: an indexed folder (or a :meth:`~ClassificationFolder.subset`), or its path.
        image_size: side to resize to, or ``None`` to keep each image's size.
        augment: random horizontal flips (garments and textures are left/right symmetric).

    Raises:
        DensecalInputError: a bad folder (see :func:`read_classification_folder`) or
            ``image_size < 1``.
    """

    def __init__(self, folder: ClassificationFolder | str | Path, image_size: int | None = None,
                 *, augment: bool = False) -> None:
        if not isinstance(folder, ClassificationFolder):
            folder = read_classification_folder(folder)
        if image_size is not None and image_size < 1:
            raise input_error("image_size", f"must be >= 1, got {image_size}")
        self.folder = folder
        self.image_size = image_size
        self.augment = augment

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, in target order."""
        return self.folder.classes

    @property
    def names(self) -> tuple[str, ...]:
        """Image names, in dataset order."""
        return self.folder.names

    @property
    def multilabel(self) -> bool:
        """Whether targets are multi-hot (else class ids)."""
        return self.folder.multilabel

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        image = image_to_tensor(read_image(self.folder.paths[index]))
        if self.image_size is not None:
            image = resize(image, self.image_size)
        if self.augment and bool(torch.rand(()) < 0.5):
            image = image.flip(-1)
        labels = torch.from_numpy(self.folder.matrix[index].copy())
        target = (labels > 0).float() if self.multilabel else labels.argmax()
        return image, target, labels


def _labels_csv(names: list[str], classes: Sequence[str], labels: np.ndarray) -> str:
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    if labels.ndim == 1:
        writer.writerow(_SINGLE_HEADER)
        writer.writerows([name, classes[int(k)]] for name, k in zip(names, labels, strict=True))
    else:
        writer.writerow(["name", *classes])
        writer.writerows([name, *(int(v) for v in row)]
                         for name, row in zip(names, labels, strict=True))
    return table.getvalue()


def _check_labels(labels: np.ndarray, n: int, classes: Sequence[str]) -> None:
    c = len(classes)
    if not c or len(set(classes)) != c:
        raise input_error("classes", "need distinct class names")
    if labels.ndim == 1:
        if labels.shape != (n,) or (n and labels.dtype.kind not in "iu"):
            raise input_error("labels", f"expected {n} integer class ids, got {labels.shape} "
                                        f"{labels.dtype}")
        bad = labels[(labels < 0) | (labels >= c)]
        if bad.size:
            raise input_error("labels", f"class id {int(bad[0])} outside 0..{c - 1}")
    elif labels.ndim == 2:
        if labels.shape != (n, c):
            raise input_error("labels", f"expected shape {(n, c)}, got {labels.shape}")
        if not np.isin(labels, (0, 1, 2)).all():
            raise input_error("labels", "multi-label values must be 0, 1 or 2")
    else:
        raise input_error("labels", f"expected (N,) class ids or an (N, C) matrix, got "
                                    f"{labels.ndim} dimensions")


def write_classification_folder(root: str | Path,
                                samples: Sequence[tuple[str, np.ndarray | Path]],
                                classes: Sequence[str], labels: np.ndarray | Sequence[int], *,
                                masks: Sequence[np.ndarray] | None = None,
                                extra_files: dict[str, str] | None = None) -> Path:
    """Write a classification folder of either kind, staged then moved into place.

    Args:
        root: destination folder: new, empty, or a classification folder densecal wrote (it is
            replaced whole, with its ``manifest.json``); any other folder is refused.
        samples: ``(name, image)`` pairs: ``image`` an ``(H, W, 3)`` uint8 array (saved as
            ``images/NAME.png``) or the path of an image file (copied as ``images/NAME<ext>``).
        classes: C distinct class names, written to ``classes.txt`` in this order.
        labels: ``(N,)`` integer class ids in ``0..C-1`` (a single-label folder, header
            ``name,label``) or an ``(N, C)`` matrix in {0, 1, 2} (a multi-label folder, header
            ``name,<classes>``).
        masks: optional ``(H, W)`` masks in [0, 1], one per sample, written to
            ``masks/NAME.png`` as ``round(255 * mask)``.
        extra_files: more text files to write at the root (``{file name: content}``).

    Returns:
        ``root``.

    Raises:
        DensecalInputError: labels of the wrong shape, type or values, classes not distinct,
            a mask count mismatch, or a ``root`` densecal did not write. Nothing is written then.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "d"
        >>> black = np.zeros((4, 4, 3), np.uint8)
        >>> _ = write_classification_folder(out, [("a", black)], ["x", "y"], np.array([[2, 1]]))
        >>> (out / "labels.csv").read_text()
        'name,x,y\\na,2,1\\n'
    """
    labels = np.asarray(labels)
    _check_labels(labels, len(samples), classes)
    if masks is not None and len(masks) != len(samples):
        raise input_error("masks", f"{len(masks)} masks for {len(samples)} samples")
    root = Path(root)
    with staged_dataset(root, CLASSIFICATION_SCHEMA) as stage:
        write_classification_files(stage, samples, classes, labels, masks=masks,
                                   extra_files=extra_files)
    return root


def write_classification_files(dest: Path, samples: Sequence[tuple[str, np.ndarray | Path]],
                               classes: Sequence[str], labels: np.ndarray, *,
                               masks: Sequence[np.ndarray] | None = None,
                               extra_files: dict[str, str] | None = None) -> None:
    """The files of :func:`write_classification_folder` written straight into ``dest`` (a new
    folder inside a staging folder; the arguments already checked), with ``manifest.json``."""
    (dest / "images").mkdir(parents=True)
    if masks is not None:
        (dest / "masks").mkdir()
    for i, (name, image) in enumerate(samples):
        if isinstance(image, np.ndarray):
            Image.fromarray(image).save(dest / "images" / f"{name}.png")
        else:
            shutil.copyfile(image, dest / "images" / f"{name}{Path(image).suffix}")
        if masks is not None:
            mask8 = np.rint(np.clip(masks[i], 0, 1).astype(np.float64) * 255).astype(np.uint8)
            Image.fromarray(mask8).save(dest / "masks" / f"{name}.png")
    (dest / "labels.csv").write_text(_labels_csv([n for n, _ in samples], classes, labels),
                                     encoding="utf-8")
    (dest / "classes.txt").write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")
    for file_name, content in (extra_files or {}).items():
        (dest / file_name).write_text(content, encoding="utf-8")
    (dest / "manifest.json").write_text(json.dumps({"schema": CLASSIFICATION_SCHEMA}) + "\n",
                                        encoding="utf-8")
