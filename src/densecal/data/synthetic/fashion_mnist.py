"""The vendored Fashion-MNIST subset (Zalando Research, MIT licence).

3000 training and 1000 test garments (28 x 28 grayscale, 300 / 100 per class) shipped inside the
package at ``densecal/data/_vendor/fashion_mnist_subset.npz``; see ``_vendor/README.md`` and
``scripts/vendor_fashion_mnist.py`` for provenance and regeneration. Source:
Xiao, Rasul & Vollgraf, "Fashion-MNIST" (2017), https://github.com/zalandoresearch/fashion-mnist.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

from densecal.errors import input_error

__all__ = ["CLASS_NAMES", "VAL_EVERY", "load_garments", "split_garments"]

VAL_EVERY = 5
"""Every 5th garment of the training file goes to the validation pool (disjoint from train)."""

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
"""Fashion-MNIST class names, indexed by label (from the dataset's README)."""

_SUBSET = "fashion_mnist_subset.npz"


@functools.cache
def _load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    with resources.as_file(resources.files("densecal.data") / "_vendor" / _SUBSET) as path:
        with np.load(path, allow_pickle=False) as npz:
            images = npz[f"{split}_images"]
            labels = npz[f"{split}_labels"].astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_garments(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the vendored garments of one split.

    Args:
        split: ``"train"`` (3000 images from Fashion-MNIST's training file) or ``"test"`` (1000
            images from its t10k file).

    Returns:
        ``(images, labels)``: ``(N, 28, 28)`` uint8 (0 = background) and ``(N,)`` int64 class ids
        in 0..9 (see :data:`CLASS_NAMES`). Read-only, cached.

    Raises:
        DensecalInputError: ``split`` is not ``"train"`` or ``"test"``.

    Example:
        >>> images, labels = load_garments("test")
        >>> images.shape, images.dtype, int(labels.max())
        ((1000, 28, 28), dtype('uint8'), 9)
    """
    if split not in ("train", "test"):
        raise input_error("split", f"expected 'train' or 'test', got {split!r}")
    return _load_split(split)


def split_garments(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Garments available to a scene split: ``test`` uses the t10k file; ``val`` every
    :data:`VAL_EVERY`-th garment of the training file and ``train`` the rest (disjoint pools).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        ``(images, labels)`` as :func:`load_garments`, restricted to the split's pool.
    """
    images, labels = load_garments("test" if split == "test" else "train")
    if split == "test":
        return images, labels
    keep = np.arange(len(images)) % VAL_EVERY == 0
    if split != "val":
        keep = ~keep
    return images[keep], labels[keep]
