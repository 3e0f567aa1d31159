"""NIfTI volumes -> 2-D slice folder datasets, plus the slicing helpers the brain dataset shares.

Input layout (users' own volumes)::

    ROOT/images/NAME.nii[.gz]        3-D intensity volume (X, Y, Z)
    ROOT/labels/NAME.nii[.gz]        (or ROOT/masks/) integer class map (X, Y, Z)
                                     or probability map (X, Y, Z, K), summing to 1 over K

Output layout (the multi-class folder dataset of the shared conventions)::

    OUT/images/STEM.png   8-bit grayscale, round(255 * normalised intensity)
    OUT/masks/STEM.png    8-bit class indices (argmax of the soft truth when there is one)
    OUT/soft/STEM.npy     float32 (K, H, W) soft truth, when the labels are probability maps or
                          the slices are resampled (then the area fraction of every class)
    OUT/manifest.json     what was converted, how

with ``STEM = f"{NAME}__{letter}{index:03d}"``: ``x`` sagittal, ``y`` coronal, ``z`` axial.

Orientation: every volume is first reoriented to the closest RAS+ voxel order with
``nibabel.as_closest_canonical`` (first voxel axis towards the patient's Right, second Anterior,
third Superior). A slice then shows its two in-plane axes with the higher axis running up the
rows and the lower one along the columns (:func:`oriented_slice`): axial slices have anterior at
the top and the patient's right on the image right (neurological convention), coronal and
sagittal slices have superior at the top, and sagittal slices anterior on the right.

Resampling (``size``): each slice is padded to a centred square (background: intensity 0,
class 0) and area-averaged to ``size x size`` (:func:`area_resample`): each output pixel is the
exact overlap-weighted mean of the voxels it covers, so resampled soft truth is the partial-volume
fraction of every class, and the mask is its argmax (ties go to the lower class index).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from densecal._checks import check_int, check_out_apart
from densecal.atomic import staged_dataset
from densecal.data.convert.slicing import (
    AXIS_LETTERS,
    check_axis,
    normalise_intensity,
    oriented_slice,
    square_resample,
    write_slice,
)
from densecal.errors import DensecalInputError, input_error
from densecal.progress import track

__all__ = [
    "LABEL_DIR_NAMES",
    "NiftiPair",
    "NiftiSlice",
    "convert_nifti_folder",
    "find_nifti_pairs",
    "load_nifti_image",
    "load_nifti_label",
    "nifti_slices",
]

LABEL_DIR_NAMES: tuple[str, ...] = ("labels", "masks")
"""Label folder names recognised under a NIfTI root (exactly one must exist)."""

NIFTI_SCHEMA = "densecal.nifti-slices/1"
_SUFFIXES = (".nii.gz", ".nii")
_AFFINE_TOLERANCE_MM = 1e-2
_MEDICAL_HINT = 'pip install "densecal[medical]"'


class NiftiPair(NamedTuple):
    """An image volume and its label volume, paired by name (file name without .nii[.gz])."""

    name: str
    image: Path
    label: Path


class NiftiSlice(NamedTuple):
    """One oriented 2-D slice of a volume pair.

    Attributes:
        index: voxel index of the slice along the slicing axis (RAS order).
        image: ``(H, W)`` float32 in [0, 1].
        label: ``(H, W)`` int64 class indices.
        soft: ``(K, H, W)`` float32 soft truth summing to 1 over K, or ``None``.
    """

    index: int
    image: np.ndarray
    label: np.ndarray
    soft: np.ndarray | None


# ----------------------------------------------------------------------------- NIfTI reading

def _nibabel() -> Any:
    try:
        import nibabel
    except ImportError:
        raise DensecalInputError(f"reading NIfTI needs nibabel: {_MEDICAL_HINT}") from None
    return nibabel


def _nifti_name(path: Path) -> str | None:
    lower = path.name.lower()
    for suffix in _SUFFIXES:
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return path.name[:-len(suffix)]
    return None


def _scan(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        name = _nifti_name(path)
        if name is None or path.name.startswith(".") or not path.is_file():
            continue
        if name in found:
            raise input_error(path, f"duplicate volume name {name!r} (also {found[name].name})")
        found[name] = path
    return found


def _load(path: Path) -> Any:
    """Open a NIfTI file, reoriented to RAS+ voxel order (headers only; data read lazily)."""
    nib = _nibabel()
    try:
        return nib.as_closest_canonical(nib.load(str(path)))
    except (OSError, EOFError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise input_error(path, f"cannot be read as NIfTI: {detail}") from None


def _data(path: Path, img: Any) -> np.ndarray:
    try:
        return np.asarray(img.dataobj)
    except (OSError, EOFError, ValueError, MemoryError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise input_error(path, f"cannot read the voxel data (truncated?): {detail}") from None


def _spatial_shape(path: Path, shape: tuple[int, ...], kind: str) -> tuple[int, int, int]:
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) == 3 or (kind == "label" and len(shape) == 4):
        return tuple(shape[:3])  # type: ignore[return-value]
    expected = "(X, Y, Z) or (X, Y, Z, K)" if kind == "label" else "(X, Y, Z)"
    raise input_error(path, f"{kind} volume of shape {tuple(shape)}; expected {expected}")


def load_nifti_image(path: str | Path) -> np.ndarray:
    """Read an intensity volume in RAS+ voxel order, normalised per volume to [0, 1].

    Args:
        path: ``.nii`` or ``.nii.gz`` file, 3-D (or 4-D with one volume).

    Returns:
        ``(X, Y, Z)`` float32 in [0, 1] (:func:`normalise_intensity`, 0.5-99.5 percentiles).

    Raises:
        DensecalInputError: nibabel missing, unreadable file, wrong dimensionality, NaN / Inf.
    """
    path = Path(path)
    img = _load(path)
    shape = _spatial_shape(path, img.shape, "image")
    data = _data(path, img).reshape(shape).astype(np.float64)
    if not np.isfinite(data).all():
        raise input_error(path, "image volume contains NaN or Inf values")
    return normalise_intensity(data)


def load_nifti_label(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a label volume in RAS+ voxel order: integer class map or probability map.

    Args:
        path: ``.nii`` / ``.nii.gz``; ``(X, Y, Z)`` integer-valued class indices in [0, 255], or
            ``(X, Y, Z, K)`` (K >= 2) probabilities in [0, 1] summing to 1 over K (within 1e-3;
            renormalised exactly).

    Returns:
        ``(labels, soft)``: ``(X, Y, Z)`` int64 class indices (the argmax of the float32 soft
        truth for a probability map) and ``(K, X, Y, Z)`` float32 soft truth or ``None``.

    Raises:
        DensecalInputError: nibabel missing, unreadable file, wrong dimensionality, NaN / Inf,
            non-integer, negative or > 255 class values, probabilities outside [0, 1] or not
            summing to 1.
    """
    path = Path(path)
    img = _load(path)
    _spatial_shape(path, img.shape, "label")
    data = _data(path, img)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.dtype.kind not in "biuf" or not np.isfinite(data).all():
        raise input_error(path, "label volume must hold finite real numbers")
    if data.ndim == 3:
        if data.dtype.kind == "f" and not (data == np.round(data)).all():
            bad = data[data != np.round(data)].flat[0]
            raise input_error(path, f"non-integer label value {bad:g}; expected class indices "
                                    f"(X, Y, Z) or a probability map (X, Y, Z, K)")
        if data.size and (data.min() < 0 or data.max() > 255):
            raise input_error(path, f"class values must be in [0, 255], got "
                                    f"[{data.min():g}, {data.max():g}]")
        return data.astype(np.int64), None
    if data.shape[3] > 256:
        raise input_error(path, f"{data.shape[3]} classes; 8-bit masks hold at most 256")
    probs = np.moveaxis(data.astype(np.float64), -1, 0)
    if probs.min() < -1e-6 or probs.max() > 1 + 1e-6:
        raise input_error(path, f"probability map values outside [0, 1] "
                                f"([{probs.min():.6g}, {probs.max():.6g}])")
    total = probs.sum(axis=0)
    if np.abs(total - 1.0).max() > 1e-3:
        raise input_error(path, f"probability map does not sum to 1 over its last axis "
                                f"(sums range {total.min():.6g}..{total.max():.6g})")
    soft = (np.clip(probs, 0.0, 1.0) / np.clip(probs, 0.0, 1.0).sum(axis=0)).astype(np.float32)
    return np.argmax(soft, axis=0).astype(np.int64), soft


def find_nifti_pairs(root: str | Path, *, check_labels: bool = True) -> list[NiftiPair]:
    """Pair ``ROOT/images/*.nii[.gz]`` with ``ROOT/labels/`` (or ``ROOT/masks/``) by name.

    Checks every pair's header shapes and voxel grid (after reorientation to RAS+, the image
    and label affines must agree within 0.01 mm: a label stored in another axis order with a
    matching affine is fine, one on another grid is refused), that all label volumes are of one
    kind (class maps or K-class probability maps with the same K), that volume names contain no
    ``"__"`` (the volume / slice separator of slice stems) and, with ``check_labels``, the label
    values (:func:`load_nifti_label`).

    Args:
        root: folder holding ``images/`` and one of ``labels/``, ``masks/``.
        check_labels: also read every label volume and validate its values.

    Returns:
        Pairs sorted by name.

    Raises:
        DensecalInputError: missing or ambiguous folders, no volumes, duplicate names (``a.nii``
            and ``a.nii.gz``), a volume without its partner (the file is named), shape or
            voxel-grid mismatch, mixed label kinds, bad label values.
    """
    root = Path(root)
    if not root.is_dir():
        raise input_error(root, "folder not found" if not root.exists() else "is not a folder")
    if not (root / "images").is_dir():
        raise input_error(root, "no images/ folder (expected ROOT/images/NAME.nii[.gz])")
    label_dirs = [root / d for d in LABEL_DIR_NAMES if (root / d).is_dir()]
    if len(label_dirs) != 1:
        problem = "no labels/ (or masks/) folder" if not label_dirs else \
            "has both labels/ and masks/ folders; keep one"
        raise input_error(root, problem)
    images, labels = _scan(root / "images"), _scan(label_dirs[0])
    if not images:
        raise input_error(root / "images", "no .nii or .nii.gz volumes")
    for name, path in images.items():
        if name not in labels:
            raise input_error(path, f"no label volume {label_dirs[0].name}/{name}.nii[.gz]")
        if "__" in name:
            raise input_error(path, "volume name contains '__' (reserved to separate volume "
                                    "and slice in stems); rename it")
    for name, path in labels.items():
        if name not in images:
            raise input_error(path, f"no image volume images/{name}.nii[.gz]")
    pairs = [NiftiPair(name, images[name], labels[name]) for name in sorted(images)]
    kinds: dict[int, Path] = {}
    for pair in pairs:
        kinds.setdefault(_check_pair_headers(pair), pair.label)
    if len(kinds) > 1:
        first, other = sorted(kinds.items())[:2]
        raise input_error(other[1], f"label volumes mix kinds: {_kind(other[0])} here, "
                                    f"{_kind(first[0])} in {first[1].name}")
    if check_labels:
        for pair in pairs:
            load_nifti_label(pair.label)
    return pairs


def _kind(k: int) -> str:
    return "integer class maps" if k == 0 else f"{k}-class probability maps"


def _check_pair_headers(pair: NiftiPair) -> int:
    """Check shapes / orientation of a pair; return 0 (class map) or K (probability map)."""
    image, label = _load(pair.image), _load(pair.label)  # both reoriented to RAS+
    image_shape = _spatial_shape(pair.image, image.shape, "image")
    label_shape = _spatial_shape(pair.label, label.shape, "label")
    if image_shape != label_shape:
        raise input_error(pair.label, f"shape {label_shape} does not match the image volume's "
                                      f"{image_shape} ({pair.image.name})")
    if not np.allclose(image.affine, label.affine, atol=_AFFINE_TOLERANCE_MM):
        raise input_error(pair.label, f"voxel grid (affine) differs from the image volume's "
                                      f"({pair.image.name}); resample it onto the image grid")
    k = label.shape[3] if len(label.shape) == 4 else 1
    return 0 if k == 1 else int(k)


def nifti_slices(image_path: str | Path, label_path: str | Path, axis: str = "axial", *,
                 size: int | None = None, skip_empty: bool = False,
                 num_classes: int | None = None) -> Iterator[NiftiSlice]:
    """Oriented 2-D slices of one volume pair (module docstring: orientation, resampling).

    Args:
        image_path: intensity volume (:func:`load_nifti_image`).
        label_path: label volume (:func:`load_nifti_label`), same voxel grid.
        axis: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        size: pad each slice to a square and area-average it to ``size x size``; ``None`` keeps
            the voxel grid.
        skip_empty: skip slices whose full-resolution labels are all background (class 0).
        num_classes: with ``size`` and an integer class map, the number K of soft-truth channels
            (default: the volume's largest class + 1).

    Yields:
        :class:`NiftiSlice` in increasing slice index. ``soft`` is the probability map's slice,
        the resampled class fractions when ``size`` is given, else ``None``.

    Raises:
        DensecalInputError: bad axis, size or ``num_classes``, unreadable volumes, or volumes
            on different voxel grids (shape or affine).
    """
    fixed = check_axis(axis)
    if size is not None:
        check_int("size", size, low=1, high=4096)
    _check_pair_headers(NiftiPair("", Path(image_path), Path(label_path)))
    image = load_nifti_image(image_path)
    labels, soft = load_nifti_label(label_path)
    n_classes = int(labels.max()) + 1 if labels.size else 1
    if num_classes is not None:
        if soft is None and num_classes < n_classes:
            raise input_error("num_classes", f"{num_classes} is below the volume's largest "
                                             f"class + 1 ({n_classes}) in {Path(label_path).name}")
        n_classes = num_classes
    for index in range(image.shape[fixed]):
        label_2d = oriented_slice(labels, axis, index)
        if skip_empty and not label_2d.any():
            continue
        image_2d = oriented_slice(image, axis, index)
        soft_2d = None if soft is None else oriented_slice(np.moveaxis(soft, 0, -1), axis, index)
        if size is not None:
            image_2d = square_resample(image_2d, size, 0.0)
            if soft_2d is None:
                soft_2d = (np.arange(n_classes)[:, None, None] == label_2d[None]).astype(float)
            fill = np.eye(soft_2d.shape[0])[0]
            soft_2d = square_resample(soft_2d, size, fill)
        if soft_2d is not None:
            soft_2d = np.ascontiguousarray(soft_2d, dtype=np.float32)
            label_2d = np.argmax(soft_2d, axis=0)
        yield NiftiSlice(index, np.ascontiguousarray(image_2d, dtype=np.float32),
                         np.ascontiguousarray(label_2d, dtype=np.int64), soft_2d)


def convert_nifti_folder(root: str | Path, out_dir: str | Path, axis: str = "axial",
                         size: int | None = None, *, skip_empty: bool = False) -> Path:
    """Slice every volume pair of ``root`` into a 2-D folder dataset at ``out_dir``.

    Writes ``OUT/{images,masks[,soft]}/NAME__<letter><index:03d>.png|.npy`` (module docstring)
    and ``OUT/manifest.json``, atomically (:func:`staged_dataset`): ``out_dir`` must be new, empty
    or a previous conversion, which is then replaced. ``densecal train --data OUT`` and
    ``densecal evaluate`` read the result unchanged.

    Args:
        root: NIfTI folder (:func:`find_nifti_pairs`).
        out_dir: output dataset folder.
        axis: slicing plane.
        size: square output side; ``None`` keeps each volume's voxel grid.
        skip_empty: leave out slices without foreground.

    Returns:
        ``out_dir``.

    Raises:
        DensecalInputError: from :func:`find_nifti_pairs` / :func:`nifti_slices`, a non-empty
            ``out_dir`` that is no previous conversion, or no slice left to write.
    """
    check_out_apart(out_dir, {"--data": root})
    pairs = find_nifti_pairs(root)
    check_axis(axis)
    letter = AXIS_LETTERS[axis]
    num_classes = None
    if size is not None and _check_pair_headers(pairs[0]) == 0:  # one K for all class maps
        num_classes = max(int(load_nifti_label(p.label)[0].max()) + 1 for p in pairs)
    counts: dict[str, int] = {}
    n_soft = 0
    with staged_dataset(out_dir, NIFTI_SCHEMA) as stage:
        for pair in track(pairs, "slice volumes", unit="volumes"):
            counts[pair.name] = 0
            for piece in nifti_slices(pair.image, pair.label, axis, size=size,
                                      skip_empty=skip_empty, num_classes=num_classes):
                write_slice(stage, f"{pair.name}__{letter}{piece.index:03d}", piece.image,
                            piece.label, piece.soft)
                counts[pair.name] += 1
                n_soft += piece.soft is not None
        if not sum(counts.values()):
            raise input_error(root, "no slice to write (every slice is empty with skip_empty)")
        manifest = {"schema": NIFTI_SCHEMA, "source": str(Path(root).resolve()), "axis": axis,
                    "size": size, "skip_empty": skip_empty, "soft": n_soft > 0,
                    "slices_per_volume": counts}
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n",
                                             encoding="utf-8")
    return Path(out_dir)
