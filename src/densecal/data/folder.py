"""Folder datasets of (image, mask) pairs as a ``torch.utils.data.Dataset``.

Layout and pairing rules: :mod:`densecal.data.pairs` (DESIGN.md section 3). Images are resized
with bilinear interpolation and the mask with the same filter, so masks stay soft, as in the ASLP
training recipe (METHODS.md section 1.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from densecal.data.pairs import Pair, find_pairs
from densecal.data.readers import read_image, read_mask
from densecal.data.transforms import pair_to_tensors, random_augment, resize
from densecal.errors import input_error

__all__ = ["FolderDataset", "split_indices"]


class FolderDataset(Dataset):
    """Images and soft masks read from a folder dataset.

    Args:
        root: dataset root (see :func:`~densecal.data.pairs.find_pairs`); may be ``None`` when
            ``pairs`` is given.
        image_size: side ``S`` of the square output; ``None`` keeps the original size.
        image_dir: image folder, relative to ``root`` or absolute; auto-detected if ``None``.
        mask_dir: mask folder, relative to ``root`` or absolute; auto-detected if ``None``.
        augment: apply :func:`~densecal.data.transforms.random_augment` (flip, border crop,
            rotation) before resizing; reproducible under ``lightning.seed_everything``.
        pairs: use these pairs instead of scanning ``root`` (e.g. a subset for a split).

    Each item is a dict:

    - ``"image"``: ``(3, S, S)`` float32 in [0, 1];
    - ``"mask"``: ``(1, S, S)`` float32 in [0, 1], soft after resizing;
    - ``"index"``: int, the position in this dataset (the key of ASLP's per-image alpha);
    - ``"name"``: str, the file stem;
    - ``"size"``: ``(2,)`` int64 tensor, the original ``(H, W)``.

    Raises:
        DensecalInputError: from :func:`find_pairs` when scanning; when reading an item, from
            the readers, or if an image and its mask differ in size (both files are named).
    """

    def __init__(self, root: str | Path | None, *, image_size: int | None = None,
                 image_dir: str | Path | None = None, mask_dir: str | Path | None = None,
                 augment: bool = False, pairs: Sequence[Pair] | None = None) -> None:
        if image_size is not None and (isinstance(image_size, bool) or int(image_size) < 1
                                       or int(image_size) != image_size):
            raise input_error("image_size", f"must be a positive integer, got {image_size!r}")
        if pairs is None:
            if root is None:
                raise input_error("root", "a dataset folder is required when pairs is not given")
            pairs = find_pairs(root, image_dir=image_dir, mask_dir=mask_dir)
        self.root = None if root is None else Path(root)
        self.pairs: list[Pair] = list(pairs)
        self.image_size = None if image_size is None else int(image_size)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def names(self) -> list[str]:
        """File stems in dataset order."""
        return [pair.name for pair in self.pairs]

    def __getitem__(self, index: int) -> dict[str, object]:
        pair = self.pairs[index]
        image_np, mask_np = read_image(pair.image), read_mask(pair.mask)
        if image_np.shape[:2] != mask_np.shape:
            raise input_error(pair.image, f"image size {image_np.shape[1]}x{image_np.shape[0]} "
                                          f"differs from mask {pair.mask} size "
                                          f"{mask_np.shape[1]}x{mask_np.shape[0]} (W x H)")
        image, mask = pair_to_tensors(image_np, mask_np)
        if self.augment:
            image, mask = random_augment(image, mask)
        if self.image_size is not None:
            image, mask = resize(image, self.image_size), resize(mask, self.image_size)
        return {
            "image": image,
            "mask": mask,
            "index": int(index) % len(self.pairs),
            "name": pair.name,
            "size": torch.tensor(mask_np.shape, dtype=torch.int64),
        }


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
