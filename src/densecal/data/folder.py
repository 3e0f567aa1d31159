"""Folder datasets of (image, mask) pairs as a ``torch.utils.data.Dataset``.

Layout and pairing rules: :mod:`densecal.data.pairs` (docs/methods.md section 8). Images are resized
with bilinear interpolation and the mask with the same filter, so masks stay soft, as in the ASLP
training recipe (docs/methods.md section 1.3).

With ``labels=True`` the masks are multi-class label maps (pixel value = class index, see
:func:`~densecal.data.readers.read_label`); they are resized and augmented with nearest-neighbour
sampling, so no pixel ever gets a value that was not in its label map (besides the fill value of
rotated-in corners).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from densecal._checks import check_int
from densecal.data import transforms
from densecal.data.pairs import Pair, find_pairs
from densecal.data.readers import read_image, read_label, read_mask
from densecal.data.transforms import image_to_tensor, pair_to_tensors, random_augment, resize
from densecal.errors import input_error

__all__ = ["FolderDataset", "augment_labels", "collate_items", "resize_labels", "split_indices"]


class FolderDataset(Dataset):
    """Images and soft masks (or multi-class label maps) read from a folder dataset.

    Args:
        root: dataset root (see :func:`~densecal.data.pairs.find_pairs`); may be ``None`` when
            ``pairs`` is given.
        image_size: side ``S`` of the square output; ``None`` keeps the original size.
        image_dir: image folder, relative to ``root`` or absolute; auto-detected if ``None``.
        mask_dir: mask folder, relative to ``root`` or absolute; auto-detected if ``None``.
        augment: apply :func:`~densecal.data.transforms.random_augment` (flip, border crop,
            rotation) before resizing; reproducible under ``lightning.seed_everything``.
        pairs: use these pairs instead of scanning ``root`` (e.g. a subset for a split).
        labels: read masks as multi-class label maps (:func:`~densecal.data.readers.read_label`)
            and resize / augment them with nearest-neighbour sampling.
        num_classes: with ``labels``, check every label value is in ``0..num_classes-1`` or
            equals ``ignore_index``; ``None`` skips the check.
        ignore_index: with ``labels``, the "unlabelled" value; also fills the corners that a
            rotation brings in (0 when ``None``).
        keep_original: add the mask at its original size (binary masks; for ASLP's ``strict``
            validation accuracy); batch such items with :func:`collate_items`.
        label_transform: with ``labels``, a function of the ``(H, W)`` int64 label map applied
            at every load, before augmentation (e.g. the redrawn class flips of
            :class:`~densecal.data.synthetic.ambiguity.FlipTransform`); items then also hold
            ``"base"``, the label map before it, with the same resizing and augmentation.

    Each item is a dict:

    - ``"image"``: ``(3, S, S)`` float32 in [0, 1];
    - ``"mask"``: ``(1, S, S)`` float32 in [0, 1], soft after resizing; with ``labels``,
      ``(S, S)`` int64 class indices;
    - ``"index"``: int, the position in this dataset (the key of ASLP's per-image alpha);
    - ``"name"``: str, the file stem;
    - ``"size"``: ``(2,)`` int64 tensor, the original ``(H, W)``;
    - ``"original"`` (with ``keep_original``): ``(H, W)`` float32 mask at its original size;
    - ``"base"`` (with ``label_transform``): ``(S, S)`` int64 label map before the transform.

    Raises:
        DensecalInputError: from :func:`find_pairs` when scanning; when reading an item, from
            the readers, if an image and its mask differ in size (both files are named), or a
            label value outside the classes (the label file is named).
    """

    def __init__(self, root: str | Path | None, *, image_size: int | None = None,
                 image_dir: str | Path | None = None, mask_dir: str | Path | None = None,
                 augment: bool = False, pairs: Sequence[Pair] | None = None,
                 labels: bool = False, num_classes: int | None = None,
                 ignore_index: int | None = None, keep_original: bool = False,
                 label_transform: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        if image_size is not None:
            check_int("image_size", image_size, low=1)
        if pairs is None:
            if root is None:
                raise input_error("root", "a dataset folder is required when pairs is not given")
            pairs = find_pairs(root, image_dir=image_dir, mask_dir=mask_dir)
        self.root = None if root is None else Path(root)
        self.pairs: list[Pair] = list(pairs)
        self.image_size = None if image_size is None else int(image_size)
        self.augment = augment
        self.labels = labels
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.keep_original = keep_original and not labels
        self.label_transform = label_transform

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def names(self) -> list[str]:
        """File stems in dataset order."""
        return [pair.name for pair in self.pairs]

    def __getitem__(self, index: int) -> dict[str, object]:
        pair = self.pairs[index]
        image_np = read_image(pair.image)
        mask_np = read_label(pair.mask) if self.labels else read_mask(pair.mask)
        if image_np.shape[:2] != mask_np.shape:
            raise input_error(pair.image, f"image size {image_np.shape[1]}x{image_np.shape[0]} "
                                          f"differs from mask {pair.mask} size "
                                          f"{mask_np.shape[1]}x{mask_np.shape[0]} (W x H)")
        base = None
        if self.labels:
            self._check_labels(pair, mask_np)
            if self.label_transform is None:
                image, mask = self._label_item(image_np, mask_np)
            else:  # the transformed and the base map share one resize and augmentation
                base_np = np.asarray(mask_np, dtype=np.int64)
                image, both = self._label_item(image_np, np.stack([self.label_transform(base_np),
                                                                   base_np]))
                mask, base = both[0], both[1]
        else:
            image, mask = pair_to_tensors(image_np, mask_np)
            if self.augment:
                image, mask = random_augment(image, mask)
            if self.image_size is not None:
                image, mask = resize(image, self.image_size), resize(mask, self.image_size)
        item: dict[str, object] = {
            "image": image,
            "mask": mask,
            "index": int(index) % len(self.pairs),
            "name": pair.name,
            "size": torch.tensor(mask_np.shape, dtype=torch.int64),
        }
        if self.keep_original:
            item["original"] = torch.from_numpy(np.ascontiguousarray(mask_np, dtype=np.float32))
        if base is not None:
            item["base"] = base
        return item


    def _check_labels(self, pair: Pair, label: np.ndarray) -> None:
        if self.num_classes is None:
            return
        bad = (label < 0) | (label >= self.num_classes)
        if self.ignore_index is not None:
            bad &= label != self.ignore_index
        if bad.any():
            allowed = f"0..{self.num_classes - 1}" + (
                "" if self.ignore_index is None else f" or the ignore index {self.ignore_index}")
            raise input_error(pair.mask, f"label value {int(label[bad].flat[0])} is not a class "
                                         f"index {allowed} ({int(bad.sum())} pixels)")

    def _label_item(self, image_np: np.ndarray, label_np: np.ndarray
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image ``(3, S, S)`` and label map ``(S, S)`` int64 (or a stack ``(M, S, S)`` given
        one ``(M, H, W)``), nearest-neighbour for the labels."""
        image = image_to_tensor(image_np)
        label = torch.from_numpy(np.ascontiguousarray(label_np, dtype=np.int64))
        fill = 0 if self.ignore_index is None else int(self.ignore_index)
        if self.augment:
            image, label = augment_labels(image, label, fill)
        if self.image_size is not None:
            image, label = resize(image, self.image_size), resize_labels(label, self.image_size)
        return image, label


def collate_items(items: list[dict[str, object]]) -> dict[str, object]:
    """Batch :class:`FolderDataset` items as the default collate does, except ``"original"``
    (masks of different sizes), which stays a list of ``(H, W)`` tensors."""
    from torch.utils.data import default_collate

    originals = [item["original"] for item in items] if "original" in items[0] else None
    batch = default_collate([{k: v for k, v in item.items() if k != "original"}
                             for item in items])
    if originals is not None:
        batch["original"] = originals
    return batch


def resize_labels(label: torch.Tensor, size: int) -> torch.Tensor:
    """Resize an ``(H, W)`` integer label map (or a stack ``(M, H, W)`` of them) to
    ``(size, size)`` by nearest neighbour.

    Uses PyTorch's ``nearest-exact`` rule (the source pixel whose centre is nearest, as PIL's
    ``NEAREST``), so every output value occurs in the input. Values must be below 2**24 (exact
    in float32).

    Example:
        >>> resize_labels(torch.tensor([[0, 1], [2, 255]]), 4).tolist()[0]
        [0, 0, 1, 1]
    """
    if tuple(label.shape[-2:]) == (size, size):
        return label
    maps = label.reshape(-1, 1, *label.shape[-2:]).float()
    out = F.interpolate(maps, size=(size, size), mode="nearest-exact")
    return out.reshape(*label.shape[:-2], size, size).round().to(label.dtype)


def _rotate_labels(label: torch.Tensor, degrees: float, fill: int) -> torch.Tensor:
    """Rotate an ``(H, W)`` label map (or a stack ``(M, H, W)``) about its centre like the image
    rotation of :func:`densecal.data.transforms.random_augment`, by nearest neighbour, ``fill``
    outside.

    The label is shifted by ``-fill`` before sampling so that the zeros grid sampling puts
    outside the image become ``fill`` after shifting back.
    """
    height, width = label.shape[-2:]
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[cos, -sin * height / width, 0.0],
                          [sin * width / height, cos, 0.0]], dtype=torch.float64)
    grid = F.affine_grid(theta[None], [1, 1, height, width], align_corners=False)
    shifted = (label - fill).double().reshape(1, -1, height, width)  # maps as channels
    out = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.reshape(label.shape).round().long().to(label.dtype) + fill


def augment_labels(image: torch.Tensor, label: torch.Tensor, fill: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The random flip / border crop / rotation of
    :func:`~densecal.data.transforms.random_augment` for an image and a label map.

    The same random draws, in the same order, as ``random_augment``; the image is resampled
    bilinearly, the label map by nearest neighbour (rotated-in corners get ``fill``), so the
    output labels are a subset of the input labels and ``fill``.

    Args:
        image: ``(C, H, W)`` float tensor.
        label: ``(H, W)`` integer tensor (or a stack ``(M, H, W)`` given the same
            transform), same ``H, W``.
        fill: label value of pixels rotated in from outside the image.

    Returns:
        The transformed image ``(C, H', W')`` and label map ``(H', W')`` (``(M, H', W')``).
    """
    if torch.rand(()) < 0.5:
        image, label = image.flip(-1), label.flip(-1)
    height, width = label.shape[-2:]
    crop_h = transforms._randint(min(transforms.MAX_BORDER_CROP, height // 8))
    crop_w = transforms._randint(min(transforms.MAX_BORDER_CROP, width // 8))
    top, left = transforms._randint(crop_h), transforms._randint(crop_w)
    image = image[:, top:top + height - crop_h, left:left + width - crop_w]
    label = label[..., top:top + height - crop_h, left:left + width - crop_w]
    if torch.rand(()) < transforms.ROTATION_PROBABILITY:
        degrees = (torch.rand(()).item() * 2.0 - 1.0) * transforms.MAX_ROTATION_DEG
        image = transforms._rotate(image, degrees)
        label = _rotate_labels(label, degrees, fill)
    return image.contiguous(), label.contiguous()


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` into train and validation indices, deterministically from ``seed``.

    The validation part has ``round(n * val_fraction)`` items, at least one when
    ``val_fraction > 0`` and at most ``n - 1`` (both parts non-empty when ``n >= 2``).

    Args:
        n: number of items, ``>= 1``.
        val_fraction: fraction in [0, 1) held out for validation.
        seed: seed of ``numpy.random.default_rng`` for the permutation.

    Returns:
        ``(train, val)``, each sorted ascending; together a partition of ``range(n)``.

    Raises:
        DensecalInputError: ``n < 1``, ``val_fraction`` outside [0, 1), or a validation part
            requested from a single item.

    Example:
        >>> train, val = split_indices(10, 0.2, seed=0)
        >>> len(train), len(val), sorted(train + val) == list(range(10))
        (8, 2, True)
    """
    if n < 1:
        raise input_error("n", f"need at least one item to split, got {n}")
    if not 0.0 <= val_fraction < 1.0:
        raise input_error("val_fraction", f"must be in [0, 1), got {val_fraction}")
    n_val = 0 if val_fraction == 0 else min(max(1, round(n * val_fraction)), n - 1)
    if val_fraction > 0 and n_val == 0:
        raise input_error("val_fraction", "cannot hold out a validation part from 1 item")
    order = np.random.default_rng(seed).permutation(n)
    return sorted(int(i) for i in order[n_val:]), sorted(int(i) for i in order[:n_val])
