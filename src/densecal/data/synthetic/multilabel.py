"""Multi-label garment scenes, written as multi-label classification folders.

The folder format (``images/``, ``labels.csv`` with cells 0 / 1 / 2 = absent / present /
present and difficult, ``classes.txt``) is owned by :mod:`densecal.data.classification`.

:func:`write_multilabel_scenes` renders 2..4 Fashion-MNIST garments per scene
(:func:`densecal.data.synthetic.multiscene.make_multi_scene`) and marks a garment **difficult**
when it is
small (visible area ``area_fraction · visible_fraction < 0.02`` of the image), heavily occluded
(``visible_fraction < 0.4``) or low-contrast (``contrast < 0.13``, the measured coverage-weighted
RGB distance in [0, 1]); garments covering no labelled pixel are not labelled at all. A class
present several times is difficult only when all its garments are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from densecal.data.classification import write_classification_folder
from densecal.data.synthetic.fashion_mnist import CLASS_NAMES, split_garments
from densecal.data.synthetic.multiscene import GarmentInfo, MultiSceneParams, make_multi_scene
from densecal.data.synthetic.scene import SceneParams
from densecal.data.synthetic.textures import BACKGROUND_NAMES, load_texture
from densecal.errors import input_error

__all__ = ["MULTILABEL_CLASSES", "MULTILABEL_SCENE", "Difficulty", "garment_labels",
           "write_multilabel_scenes"]


@dataclass(frozen=True)
class Difficulty:
    """Thresholds that make a garment "difficult" (any one suffices).

    Attributes:
        min_visible_area: visible area ``area_fraction · visible_fraction`` below this (0.02).
        min_visible_fraction: visible fraction below this (0.4: 60 % occluded).
        min_contrast: measured contrast below this (0.13).

    On 48-pixel scenes with the default ranges (:data:`MULTILABEL_SCENE`,
    :data:`MULTILABEL_CLASSES`) these flag about 4 %, 15 % and 3 % of the labelled garments,
    18 % in all (924 garments of 300 seeded scenes).
    """

    min_visible_area: float = 0.02
    min_visible_fraction: float = 0.4
    min_contrast: float = 0.13

    def is_difficult(self, g: GarmentInfo) -> bool:
        """Whether garment ``g`` is difficult."""
        return (g.area_fraction * g.visible_fraction < self.min_visible_area
                or g.visible_fraction < self.min_visible_fraction
                or g.contrast < self.min_contrast)


def garment_labels(garments: tuple[GarmentInfo, ...], difficulty: Difficulty = Difficulty(),
                   num_classes: int = 10) -> np.ndarray:
    """``(num_classes,)`` int8 labels of one scene: 1 present, 2 difficult, 0 absent.

    A garment that owns no labelled pixel is not labelled; a class is difficult only when every
    labelled garment of that class is.
    """
    out = np.zeros(num_classes, dtype=np.int8)
    for g in garments:
        if g.labelled_pixels == 0:
            continue
        value = 2 if difficulty.is_difficult(g) else 1
        out[g.cls] = value if out[g.cls] == 0 else min(out[g.cls], value)
    return out


_SPLITS = ("train", "val", "test")

MULTILABEL_CLASSES: tuple[int, ...] = (0, 1, 3, 5, 8, 9)
"""Default classes: T-shirt/top, Trouser, Dress, Sandal, Bag, Ankle boot, one or two from each
of Fashion-MNIST's visual groups (tops, trousers, dresses, footwear, bags). With all ten
classes, four of them near-identical upper-body garments, a resnet-tiny trained from scratch on
3,000 scenes reached a test mAP of only 0.33 after 7 epochs (chance 0.26); with these six on
4,000 scenes it reached 0.52 after 3 epochs (chance 0.38)."""

MULTILABEL_SCENE = MultiSceneParams(
    n_garments=(2, 4),
    scene=SceneParams(garment_scale=(0.4, 0.7), max_rotation_deg=15.0,
                      garment_contrast=(0.5, 1.0)))
"""Scene ranges: 2-4 garments, mildly rotated, contrast down to 0.5 (the low-contrast
"difficult" flag then comes from garments on similar-coloured ones and textures)."""


def write_multilabel_scenes(out_dir: str | Path, *, n_train: int = 400, n_val: int = 100,
                            n_test: int = 200, size: int = 48, seed: int = 0,
                            difficulty: Difficulty = Difficulty(),
                            params: MultiSceneParams = MULTILABEL_SCENE,
                            classes: Sequence[int] | None = MULTILABEL_CLASSES
                            ) -> dict[str, Path]:
    """Write multi-label garment scenes as one classification folder per split.

    Garments come from :func:`densecal.data.synthetic.fashion_mnist.split_garments` (disjoint train
    / val / test pools); backgrounds are crops of
    :data:`~densecal.data.synthetic.textures.BACKGROUND_NAMES`.
    Split k draws from ``default_rng(SeedSequence(seed).spawn(3)[k])``: deterministic.

    Args:
        out_dir: destination folder; its split folders must not exist.
        n_train: training scenes.
        n_val: validation scenes.
        n_test: test scenes.
        size: scene side in pixels (>= 16).
        seed: master seed.
        difficulty: thresholds of the "difficult" flags.
        params: garment count and per-garment ranges.
        classes: Fashion-MNIST ids (distinct, 0..9) the scenes draw garments from, in
            label-column order (default :data:`MULTILABEL_CLASSES`); ``None`` for all ten.

    Returns:
        ``{"train": OUT/train, "val": OUT/val, "test": OUT/test}``.

    Raises:
        DensecalInputError: negative counts, ``size < 16``, bad ``classes`` or an existing
            split folder.
    """
    out_dir = Path(out_dir)
    counts = {"train": n_train, "val": n_val, "test": n_test}
    if min(counts.values()) < 0 or size < 16:
        raise input_error("write_multilabel_scenes", "counts must be >= 0 and size >= 16")
    ids = list(range(len(CLASS_NAMES))) if classes is None else [int(c) for c in classes]
    if not ids or len(set(ids)) != len(ids) or not all(0 <= c < len(CLASS_NAMES) for c in ids):
        raise input_error("classes", f"expected distinct Fashion-MNIST ids in 0..9, got {classes}")
    for split in _SPLITS:
        if (out_dir / split).exists():
            raise input_error(out_dir / split, "already exists")
    backgrounds = [load_texture(name) for name in BACKGROUND_NAMES]
    seeds = np.random.SeedSequence(seed).spawn(len(_SPLITS))
    out: dict[str, Path] = {}
    for k, split in enumerate(_SPLITS):
        images, pool_classes = split_garments(split)
        keep = np.isin(pool_classes, ids)
        rng = np.random.default_rng(seeds[k])
        samples, rows = [], []
        for i in range(counts[split]):
            scene = make_multi_scene(rng, images[keep], pool_classes[keep], backgrounds, size,
                                     params)
            samples.append((f"{split}_{i:04d}", scene.image))
            rows.append(garment_labels(scene.garments, difficulty)[ids])
        matrix = np.stack(rows) if rows else np.zeros((0, len(ids)), dtype=np.int8)
        out[split] = write_classification_folder(out_dir / split, samples,
                                                 [CLASS_NAMES[c] for c in ids], matrix)
    return out
