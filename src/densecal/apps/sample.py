"""Draw CAR samples for a folder of images: ``densecal sample``.

Per image ``STEM`` the output folder gets::

    OUT/STEM/f.npy            float32 (K, H, W): the calibration net F's class probabilities
    OUT/STEM/samples.npy      float16 (n, K, H, W): n generator samples (class probabilities);
                              with --labels, uint8 (n, H, W) argmax label maps instead
    OUT/STEM/f.png            argmax of F as an 8-bit label map (pixel value = class index)
    OUT/STEM/samples.png      the n argmax maps side by side, classes spread over 0..255

All files are written in a staging folder and moved into ``OUT`` only when every image is done.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from densecal._checks import check_out_apart
from densecal.atomic import check_replaceable, staged_directory
from densecal.data.pairs import find_images, find_pairs
from densecal.data.readers import read_image, read_label
from densecal.errors import input_error
from densecal.methods.car.sampling import load_car, sample_images

__all__ = ["write_samples"]


def write_samples(checkpoint: str | Path, data: str | Path, n: int, out: str | Path, *,
                  labels: bool = False, seed: int = 0) -> int:
    """Write the files described in the module docstring and return the number of images.

    Raises:
        DensecalInputError: bad checkpoint, data folder or ``n``.
    """
    check_out_apart(out, {"--checkpoint": checkpoint, "--data": data})
    check_replaceable(out, "sample")
    if n < 1:
        raise input_error("--n", f"must be a positive integer, got {n}")
    module = load_car(checkpoint)
    k = module.config.num_classes
    bases = None
    if module.car.oracle:  # the oracle F is computed from each image's base label map
        pairs = find_pairs(data)
        entries = [(pair.name, pair.image) for pair in pairs]
        bases = (read_label(pair.mask) for pair in pairs)
    else:
        entries = find_images(data)
    count = 0
    images = (read_image(p) for _, p in entries)
    with staged_directory(out, "sample") as stage:
        for (name, _), (f, samples) in zip(
                entries, sample_images(module, images, n, seed=seed, bases=bases), strict=True):
            folder = stage / name
            folder.mkdir(parents=True)
            maps = samples.argmax(axis=1).astype(np.uint8)  # (n, H, W)
            np.save(folder / "f.npy", f.astype(np.float32))
            np.save(folder / "samples.npy", maps if labels else samples.astype(np.float16))
            Image.fromarray(f.argmax(axis=0).astype(np.uint8)).save(folder / "f.png")
            scale = 255 // max(k - 1, 1)
            Image.fromarray(np.concatenate(list(maps), axis=1) * np.uint8(scale)).save(
                folder / "samples.png")
            count += 1
    return count
