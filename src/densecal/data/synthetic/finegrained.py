"""The fine-grained demo: confusable garments on textures, with injected misleading training images.

The Over-MAP abstract (Kantor et al., AAAI 2021; docs/methods.md section 6) uses the overlap of a
classifier's attention with the object to weed out misleading training examples in fine-grained
recognition. This dataset reproduces that setting in miniature:

- classes: the four confusable Fashion-MNIST upper-body garments shirt, T-shirt/top, pullover and
  coat (Fashion-MNIST ids 6, 0, 2, 4), optionally plus easy classes;
- each scene is one garment on a texture crop (:mod:`densecal.data.synthetic.scene`), with its
exact mask;
- a known fraction of the TRAINING scenes (default 10 %) is misleading, one of three kinds drawn
  uniformly: ``wrong_label`` (the label is another class), ``tiny_garment`` (the garment covers
  a few pixels, so the texture decides) or ``no_garment`` (texture only, all-zero mask, the
  label of the garment that would have been drawn). Validation and test scenes are clean.
- optionally (``n_seg > 0``) a fourth split ``seg`` for an object segmenter that must be
  independent of the classifier's training images and able to say "no object": clean masks of
  full-size garments, tiny garments (``seg_tiny_fraction``) and texture-only scenes with an
  empty mask (``seg_empty_fraction``). Its labels are the drawn garment's class and nothing in it
  is misleading; it shares no scene with the other splits.

Each split is a single-label classification folder (:mod:`densecal.data.classification`) with
``masks/NAME.png`` (the garment's alpha, ``round(255 * alpha)``) and ``manifest.csv``
(``name,label,garment_class,misleading,reason,scene``; ``misleading`` is 0 or 1, ``reason``
empty for clean scenes, ``scene`` what was drawn: ``garment``, ``tiny_garment`` or
``no_garment``). Generation is deterministic: split ``k`` (train, val, test, seg) draws from
``default_rng(SeedSequence(seed).spawn(4)[k])`` (the first three children of ``spawn(4)`` are
those of ``spawn(3)``, so datasets written before ``seg`` existed are reproduced unchanged).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from densecal.atomic import staged_dataset
from densecal.data.classification import write_classification_files
from densecal.data.synthetic.fashion_mnist import CLASS_NAMES, split_garments
from densecal.data.synthetic.scene import SceneParams, make_scene
from densecal.data.synthetic.textures import BACKGROUND_NAMES, load_texture, random_texture_crop
from densecal.errors import input_error

__all__ = ["CONFUSABLE_CLASSES", "DISTINCT_CLASSES", "FINEGRAINED_SCENE", "MISLEADING_KINDS",
           "SCENE_KINDS", "SEG_SPLIT", "SPLITS",
           "FineGrainedConfig", "FineGrainedSample", "make_finegrained_split",
           "write_finegrained_dataset"]

FINEGRAINED_SCHEMA = "densecal.finegrained/1"
"""Schema of the fine-grained dataset's top-level ``manifest.json``."""

CONFUSABLE_CLASSES: tuple[int, ...] = (6, 0, 2, 4)
"""Fashion-MNIST ids of shirt, T-shirt/top, pullover and coat."""

DISTINCT_CLASSES: tuple[int, ...] = (0, 1, 8, 9)
"""Fashion-MNIST ids of T-shirt/top, trouser, bag and ankle boot: four shapes no one confuses,
for a classifier accurate enough that its max-softmax means something (issue 22)."""

FINEGRAINED_SCENE = SceneParams(garment_scale=(0.6, 0.9), max_rotation_deg=15.0,
                                garment_contrast=(0.6, 1.0))
"""Clean-scene ranges: large, mildly rotated, well-contrasted garments. With the salient-object
demo's ranges (scale 0.4-0.8, rotation 45 degrees, contrast down to 0.35) a resnet-tiny
trained from scratch on 2,000 scenes of six classes stays near chance on unseen garments (22 %
test accuracy after 7 epochs, chance 17 %); with these it reaches 51 % and keeps rising."""

MISLEADING_KINDS: tuple[str, ...] = ("wrong_label", "tiny_garment", "no_garment")
SCENE_KINDS: tuple[str, ...] = ("garment", "tiny_garment", "no_garment")
SPLITS: tuple[str, ...] = ("train", "val", "test")
SEG_SPLIT = "seg"
"""The optional segmenter split (written when ``n_seg > 0``)."""


@dataclass(frozen=True)
class FineGrainedConfig:
    """Sizes, classes and corruption of the fine-grained demo.

    Attributes:
        size: scene side in pixels.
        n_train: training scenes.
        n_val: validation scenes.
        n_test: test scenes.
        n_seg: scenes of the segmenter split ``seg`` (0: not written).
        seg_tiny_fraction: expected fraction of ``seg`` scenes with a tiny garment, in [0, 1].
        seg_empty_fraction: expected fraction of ``seg`` scenes with no garment (empty mask),
            in [0, 1]; with ``seg_tiny_fraction`` at most 1.
        misleading_fraction: fraction of training scenes made misleading, in [0, 1]; the count
            is ``round(n_train * misleading_fraction)``.
        classes: Fashion-MNIST ids of the classes, in class-index order (distinct, 0..9).
        tiny_scale: garment box side range (fraction of the scene) of ``tiny_garment`` scenes.
        seed: master seed.
        scene: random ranges of the clean scenes. The default (:data:`FINEGRAINED_SCENE`) is
            easier than the salient-object demo's: classification has one label per image to
            learn from where segmentation has thousands of pixels.
    """

    size: int = 48
    n_train: int = 400
    n_val: int = 100
    n_test: int = 200
    n_seg: int = 0
    seg_tiny_fraction: float = 0.2
    seg_empty_fraction: float = 0.2
    misleading_fraction: float = 0.1
    classes: tuple[int, ...] = CONFUSABLE_CLASSES
    tiny_scale: tuple[float, float] = (0.08, 0.14)
    seed: int = 0
    scene: SceneParams = field(default_factory=lambda: FINEGRAINED_SCENE)

    def __post_init__(self) -> None:
        if not 16 <= self.size <= 1024:
            raise input_error("size", f"must be in [16, 1024], got {self.size}")
        for name in ("n_train", "n_val", "n_test", "n_seg"):
            if getattr(self, name) < 0:
                raise input_error(name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("misleading_fraction", "seg_tiny_fraction", "seg_empty_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise input_error(name, f"must be in [0, 1], got {getattr(self, name)}")
        if self.seg_tiny_fraction + self.seg_empty_fraction > 1.0:
            raise input_error("seg_empty_fraction", "seg_tiny_fraction + seg_empty_fraction "
                                                    "must be <= 1")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes) or \
                not all(0 <= c <= 9 for c in self.classes):
            raise input_error("classes", f"expected >= 2 distinct Fashion-MNIST ids in 0..9, "
                                         f"got {self.classes}")
        SceneParams(garment_scale=self.tiny_scale)  # validates the range

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of :attr:`classes` (Fashion-MNIST's names)."""
        return tuple(CLASS_NAMES[c] for c in self.classes)


@dataclass(frozen=True)
class FineGrainedSample:
    """One scene.

    Attributes:
        name: ``f"{split}_{i:04d}"``.
        image: ``(S, S, 3)`` uint8.
        mask: ``(S, S)`` float32 in [0, 1], the garment's alpha (zeros for ``no_garment``).
        label: class index written to ``labels.csv`` (wrong for ``wrong_label``).
        garment_class: class index of the garment actually drawn.
        reason: ``""`` for a clean scene, else one of :data:`MISLEADING_KINDS`.
        scene: what was drawn, one of :data:`SCENE_KINDS`.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray
    label: int
    garment_class: int
    reason: str = ""
    scene: str = "garment"


def _pools(split: str, classes: tuple[int, ...]) -> list[np.ndarray]:
    images, labels = split_garments("train" if split == SEG_SPLIT else split)
    return [images[labels == c] for c in classes]


def _scene_kinds(split: str, n: int, config: FineGrainedConfig, rng: np.random.Generator
                 ) -> tuple[list[str], list[str]]:
    """``(reasons, scenes)`` of a split's ``n`` scenes (see the module docstring)."""
    if split == SEG_SPLIT:
        p = [1.0 - config.seg_tiny_fraction - config.seg_empty_fraction,
             config.seg_tiny_fraction, config.seg_empty_fraction]
        scenes = [SCENE_KINDS[int(i)] for i in rng.choice(len(SCENE_KINDS), size=n, p=p)]
        return [""] * n, scenes
    n_bad = round(n * config.misleading_fraction) if split == "train" else 0
    reasons = [""] * n
    for i in rng.choice(n, size=n_bad, replace=False) if n_bad else []:
        reasons[int(i)] = MISLEADING_KINDS[int(rng.integers(len(MISLEADING_KINDS)))]
    return reasons, [r if r in SCENE_KINDS else "garment" for r in reasons]


def make_finegrained_split(split: str, config: FineGrainedConfig = FineGrainedConfig()
                           ) -> list[FineGrainedSample]:
    """Generate one split in memory (see the module docstring).

    Args:
        split: ``"train"``, ``"val"``, ``"test"`` or ``"seg"``.
        config: sizes, classes, corruption and seed.

    Returns:
        The scenes, in name order.

    Raises:
        DensecalInputError: unknown split.
    """
    splits = (*SPLITS, SEG_SPLIT)
    if split not in splits:
        raise input_error("split", f"expected one of {', '.join(splits)}, got {split!r}")
    n = int(getattr(config, f"n_{split}"))
    rng = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(4)[splits.index(split)])
    pools = _pools(split, config.classes)
    backgrounds = [load_texture(name) for name in BACKGROUND_NAMES]
    reasons, scenes = _scene_kinds(split, n, config, rng)
    tiny = dataclasses.replace(config.scene, garment_scale=config.tiny_scale)
    n_classes = len(config.classes)
    samples = []
    for i, (reason, scene) in enumerate(zip(reasons, scenes, strict=True)):
        k = int(rng.integers(n_classes))
        garment = pools[k][int(rng.integers(len(pools[k])))]
        if scene == "no_garment":
            image = np.rint(random_texture_crop(rng, backgrounds, config.size,
                                                scale=config.scene.background_scale,
                                                tint=config.scene.background_tint) * 255.0)
            image, mask = image.astype(np.uint8), np.zeros((config.size,) * 2, np.float32)
        else:
            params = tiny if scene == "tiny_garment" else config.scene
            image, mask = make_scene(rng, garment, backgrounds, config.size, params)
        label = k
        if reason == "wrong_label":
            label = (k + 1 + int(rng.integers(n_classes - 1))) % n_classes
        samples.append(FineGrainedSample(f"{split}_{i:04d}", image, mask, label, k, reason,
                                         scene))
    return samples


def _manifest(samples: list[FineGrainedSample], class_names: tuple[str, ...]) -> str:
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["name", "label", "garment_class", "misleading", "reason", "scene"])
    for s in samples:
        writer.writerow([s.name, class_names[s.label], class_names[s.garment_class],
                         int(bool(s.reason)), s.reason, s.scene])
    return table.getvalue()


def write_finegrained_dataset(out_dir: str | Path,
                              config: FineGrainedConfig = FineGrainedConfig()
                              ) -> dict[str, Path]:
    """Write the train / val / test splits as classification folders with masks and manifests.

    Layout: ``out_dir/{train,val,test[,seg]}/{images,masks}/NAME.png``, ``labels.csv``,
    ``classes.txt``, ``manifest.csv`` (``seg`` only when ``config.n_seg > 0``). The dataset is
    staged and moved into place when complete.

    Args:
        out_dir: destination folder (created).
        config: sizes, classes, corruption and seed.

    Returns:
        ``{split: folder}``, ``seg`` included when written.

    Raises:
        DensecalInputError: ``out_dir`` is a file, or a non-empty folder that is not an earlier
            fine-grained dataset (a generator replaces only what it wrote).
    """
    out_dir = Path(out_dir)
    splits = (*SPLITS, SEG_SPLIT) if config.n_seg else SPLITS
    with staged_dataset(out_dir, FINEGRAINED_SCHEMA) as stage:
        for split in splits:
            samples = make_finegrained_split(split, config)
            write_classification_files(
                stage / split, [(s.name, s.image) for s in samples], config.class_names,
                np.array([s.label for s in samples], dtype=np.int64),
                masks=[s.mask for s in samples],
                extra_files={"manifest.csv": _manifest(samples, config.class_names)})
        (stage / "manifest.json").write_text(json.dumps({"schema": FINEGRAINED_SCHEMA}) + "\n",
                                             encoding="utf-8")
    return {split: out_dir / split for split in splits}
