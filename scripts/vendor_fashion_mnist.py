"""Vendor a compact, class-stratified Fashion-MNIST subset into ``densecal/data/_vendor``.

Reads the idx files installed by the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``; MIT licence, Copyright 2017 Zalando SE) and writes

- ``src/densecal/data/_vendor/fashion_mnist_subset.npz`` with ``train_images`` (3000, 28, 28)
  uint8, ``train_labels`` (3000,) uint8, ``train_source_index`` (3000,) int32 and the same three
  arrays for ``test`` (1000 images from the t10k file);
- ``src/densecal/data/_vendor/LICENSE-fashion-mnist.txt``.

The selection is deterministic (seeded) and stratified: 300 train and 100 test images per class,
kept in their original file order. Run from the repository root::

    python scripts/vendor_fashion_mnist.py [--source DIR] [--out DIR] [--seed 0]

The idx format (big-endian magic, dimension sizes, then raw uint8 data) is described at
http://yann.lecun.com/exdb/mnist/ and in the Fashion-MNIST README.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
from pathlib import Path

import numpy as np

SOURCE = Path("/usr/share/datasets/fashion-mnist")
OUT = Path(__file__).resolve().parents[1] / "src" / "densecal" / "data" / "_vendor"
PER_CLASS = {"train": 300, "test": 100}
FILES = {"train": "train", "test": "t10k"}
N_CLASSES = 10

LICENSE_TEXT = """\
Fashion-MNIST subset vendored by densecal
=========================================

The file fashion_mnist_subset.npz contains a subset (3000 training and 1000 test images) of
Fashion-MNIST by Zalando Research (https://github.com/zalandoresearch/fashion-mnist), taken
unmodified from the Debian package dataset-fashion-mnist. Fashion-MNIST is distributed under the
MIT licence reproduced below.

The MIT License (MIT)

Copyright (c) 2017 Zalando SE, https://tech.zalando.com

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped idx file (uint8 payload) into an array of its declared shape.

    Raises:
        ValueError: if the magic number does not announce uint8 data or the size is wrong.
    """
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    dtype_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if magic >> 16 != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not a uint8 idx file (magic {magic:#010x})")
    shape = tuple(int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {np.prod(shape)} values for shape {shape}, "
                         f"found {data.size}")
    return data.reshape(shape)


def stratified_subset(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Pick ``per_class`` indices of each class at random; return them sorted (file order)."""
    chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
              for c in range(N_CLASSES)]
    return np.sort(np.concatenate(chosen)).astype(np.int32)


def main(argv: list[str] | None = None) -> int:
    """Write the subset npz and the licence file; print their sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    arrays: dict[str, np.ndarray] = {}
    for split, prefix in FILES.items():
        images = read_idx(args.source / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(args.source / f"{prefix}-labels-idx1-ubyte.gz")
        keep = stratified_subset(labels, PER_CLASS[split], rng)
        arrays[f"{split}_images"] = np.ascontiguousarray(images[keep])
        arrays[f"{split}_labels"] = labels[keep].astype(np.uint8)
        arrays[f"{split}_source_index"] = keep

    args.out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    (args.out / "fashion_mnist_subset.npz").write_bytes(buffer.getvalue())
    (args.out / "LICENSE-fashion-mnist.txt").write_text(LICENSE_TEXT, encoding="utf-8")
    for path in sorted(args.out.iterdir()):
        print(f"{path}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
