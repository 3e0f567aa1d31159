"""Multi-garment scenes with injected label ambiguity: CAR's Cityscapes protocol in miniature.

Kassapis et al. (ICCV 2021, section 4.2; docs/methods.md section 4) relabel five Cityscapes classes
as a whole to a "twin" class with probabilities 8/17, 7/17, 6/17, 5/17, 4/17 in every training
image, giving 2^5 = 32 ground-truth modes with known probabilities. Here five garment classes of
:mod:`densecal.data.synthetic.multiscene` play that role (labels 1..10 are garments, 11..15 their
twins).
By default every split is written with its base labels and ``ambiguity.json`` records
``"train_masks": "base"``: training then redraws the flips each time a training or validation
image is loaded (:class:`FlipTransform`, keyed by the run seed, epoch and image, as CARSSS's
``ClassFlip`` transform redraws them per load), so every image shows all its modes over
training. ``frozen_flips=True`` writes train / val masks flipped once (seeded), as densecal
0.1 did (``"train_masks": "flipped"``): a model then learns that draw's sampling error. Test
masks always keep the base labels; evaluation enumerates every mode (:func:`enumerate_modes`).
The images never change: the ambiguity is in the labels only.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from densecal.atomic import atomic_write_text, staged_dataset
from densecal.data.synthetic.fashion_mnist import CLASS_NAMES, split_garments
from densecal.data.synthetic.multiscene import MultiSceneParams, make_multi_scene
from densecal.data.synthetic.scene import SceneParams
from densecal.data.synthetic.textures import BACKGROUND_NAMES, load_texture
from densecal.errors import input_error

__all__ = ["AMBIGUITY_SCENE", "DEFAULT_SPEC", "SPLITS", "AmbiguityConfig", "AmbiguitySpec",
           "FlipTransform", "apply_flips", "enumerate_modes", "flip_transform_for",
           "make_ambiguity_split", "write_ambiguity_dataset"]

SPLITS: tuple[str, ...] = ("train", "val", "test")
SCHEMA = "densecal.ambiguity/1"


@dataclass(frozen=True)
class AmbiguitySpec:
    """Flippable classes, their twins and flip probabilities.

    Attributes:
        classes: flippable labels.
        twins: twin label of each, none of them a flippable or base label.
        probabilities: flip probability of each, in [0, 1].
        num_classes: total number of labels (background + base + twins).
    """

    classes: tuple[int, ...]
    twins: tuple[int, ...]
    probabilities: tuple[float, ...]
    num_classes: int

    def __post_init__(self) -> None:
        n = len(self.classes)
        if not len(self.twins) == len(self.probabilities) == n:
            raise input_error("spec", "classes, twins and probabilities differ in length")
        if len(set(self.classes) | set(self.twins)) != 2 * n:
            raise input_error("spec", "flippable classes and twins must be 2n distinct labels")
        if any(not 0.0 <= p <= 1.0 for p in self.probabilities):
            raise input_error("spec", f"probabilities must be in [0, 1], got "
                                      f"{self.probabilities}")
        if max((*self.classes, *self.twins), default=0) >= self.num_classes:
            raise input_error("spec", f"a label is >= num_classes ({self.num_classes})")

    @property
    def flips(self) -> dict[int, tuple[int, float]]:
        """``{class: (twin, probability)}``, the form the stochastic metrics take."""
        return {c: (t, p) for c, t, p in zip(self.classes, self.twins, self.probabilities,
                                             strict=True)}

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return {"classes": list(self.classes), "twins": list(self.twins),
                "probabilities": list(self.probabilities), "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, data: dict) -> AmbiguitySpec:
        """Inverse of :meth:`to_dict` (also accepts a whole ``ambiguity.json``)."""
        data = data.get("spec", data)
        try:
            return cls(tuple(int(c) for c in data["classes"]),
                       tuple(int(t) for t in data["twins"]),
                       tuple(float(p) for p in data["probabilities"]), int(data["num_classes"]))
        except (KeyError, TypeError, ValueError) as err:
            raise input_error("spec", f"malformed ambiguity spec ({err})") from err


DEFAULT_SPEC = AmbiguitySpec(
    classes=(1, 2, 5, 8, 9),  # T-shirt/top, Trouser, Coat, Sneaker, Bag (label = class + 1)
    twins=(11, 12, 13, 14, 15),
    probabilities=tuple(float(Fraction(k, 17)) for k in (8, 7, 6, 5, 4)),
    num_classes=16,
)
"""Five garment classes with CAR's flip probabilities 8/17 ... 4/17; twins are labels 11..15."""

AMBIGUITY_SCENE = MultiSceneParams(
    n_garments=(1, 3),
    scene=SceneParams(garment_scale=(0.4, 0.7), max_rotation_deg=15.0,
                      garment_contrast=(0.6, 1.0)))
"""Scene ranges: one to three large, mildly rotated, well-contrasted garments. The flip
frequencies of the samples can only be right where the calibration net tells the garment
classes apart; with the multi-garment defaults (2-4 garments of scale 0.3-0.6, rotation 45
degrees, contrast down to 0.35) a unet-small never learnt to (twin probability 0.01-0.03)."""


def apply_flips(label: np.ndarray, spec: AmbiguitySpec, rng: np.random.Generator) -> np.ndarray:
    """Relabel each flippable class, as a whole, to its twin with its probability.

    One uniform draw per flippable class is always consumed (present or not), so the draws of
    later images do not depend on the content of earlier ones.

    Args:
        label: ``(H, W)`` integer base label map.
        spec: the ambiguity spec.
        rng: random generator.

    Returns:
        ``(H, W)`` flipped copy, same dtype.
    """
    return _flip(label, spec, rng.random(len(spec.classes)).tolist())


def _flip(label: np.ndarray, spec: AmbiguitySpec, draws: list[float]) -> np.ndarray:
    """``label`` with each flippable class relabelled to its twin where its uniform draw is
    below its probability."""
    out = label.copy()
    for (cls, (twin, prob)), u in zip(spec.flips.items(), draws, strict=True):
        if u < prob:
            out[label == cls] = twin
    return out


class FlipTransform:
    """Redraw the whole-class flips of a base label map each time it is loaded.

    Draws one uniform per flippable class from torch's global RNG, which
    :class:`~densecal.methods.engine.sampler.SeededItems` seeds from ``(seed, epoch, image)``:
    a run sees every mode of every image over its epochs, reproducibly.

    Args:
        spec: the ambiguity spec.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> FlipTransform(DEFAULT_SPEC)(np.array([[0, 1, 2]], np.int64)).tolist()
        [[0, 1, 12]]
    """

    def __init__(self, spec: AmbiguitySpec) -> None:
        self.spec = spec

    def __call__(self, label: np.ndarray) -> np.ndarray:
        return _flip(label, self.spec,
                     torch.rand(len(self.spec.classes), dtype=torch.float64).tolist())


def flip_transform_for(data: str | Path) -> FlipTransform | None:
    """The :class:`FlipTransform` a training split needs: its dataset's ``ambiguity.json``
    (in the split folder's parent) says its masks are base labels; None otherwise (any other
    dataset, or frozen flips)."""
    manifest = Path(data).resolve().parent / "ambiguity.json"
    if not manifest.is_file():
        return None
    try:
        info = json.loads(manifest.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(info, dict) or info.get("schema") != SCHEMA:
        return None
    if info.get("train_masks", "flipped") != "base":
        return None
    return FlipTransform(AmbiguitySpec.from_dict(info))


def enumerate_modes(label_map: np.ndarray,
                    spec: AmbiguitySpec) -> list[tuple[np.ndarray, float]]:
    """Every ground-truth mode of a base label map with its probability.

    Only flippable classes present in ``label_map`` are enumerated: with ``k`` of them there are
    ``2^k`` modes whose probabilities ``prod p_c^{f_c} (1 - p_c)^{1 - f_c}`` sum to 1.

    Args:
        label_map: ``(H, W)`` integer base (unflipped) label map.
        spec: the ambiguity spec.

    Returns:
        ``[(mode_map, probability), ...]``, the all-unflipped mode first.

    Example:
        >>> modes = enumerate_modes(np.array([[0, 1]]), DEFAULT_SPEC)
        >>> [(m.tolist(), round(p * 17)) for m, p in modes]
        [([[0, 1]], 9), ([[0, 11]], 8)]
    """
    present = [(c, t, p) for c, (t, p) in spec.flips.items() if bool((label_map == c).any())]
    modes = []
    for choice in itertools.product((False, True), repeat=len(present)):
        mode, prob = label_map.copy(), 1.0
        for flip, (cls, twin, p) in zip(choice, present, strict=True):
            if flip:
                mode[label_map == cls] = twin
            prob *= p if flip else 1.0 - p
        modes.append((mode, prob))
    return modes


@dataclass(frozen=True)
class AmbiguityConfig:
    """Sizes, seed and spec of the ambiguity dataset.

    Attributes:
        size: scene side in pixels.
        n_train: training scenes (flipped masks).
        n_val: validation scenes (flipped masks).
        n_test: test scenes (base masks).
        seed: master seed.
        spec: flippable classes, twins and probabilities.
        frozen_flips: write train / val masks flipped once (densecal 0.1's dataset) instead of
            base masks whose flips training redraws per load.
        scene: multi-garment scene ranges (default :data:`AMBIGUITY_SCENE`).
        garment_classes: Fashion-MNIST ids (0..9) the scenes draw garments from; ``None`` for
            the spec's flippable classes (label - 1), so every garment is ambiguous.
    """

    size: int = 48
    n_train: int = 400
    n_val: int = 50
    n_test: int = 100
    seed: int = 0
    spec: AmbiguitySpec = DEFAULT_SPEC
    frozen_flips: bool = False
    scene: MultiSceneParams = field(default_factory=lambda: AMBIGUITY_SCENE)
    garment_classes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not 16 <= self.size <= 1024:
            raise input_error("size", f"must be in [16, 1024], got {self.size}")
        for name in ("n_train", "n_val", "n_test"):
            if getattr(self, name) < 0:
                raise input_error(name, f"must be >= 0, got {getattr(self, name)}")
        if self.seed < 0:
            raise input_error("seed", f"must be >= 0, got {self.seed}")
        ids = self.pool_classes
        if not ids or len(set(ids)) != len(ids) or not all(0 <= c <= 9 for c in ids):
            raise input_error("garment_classes", f"expected distinct Fashion-MNIST ids in 0..9, "
                                                 f"got {self.garment_classes}")

    @property
    def pool_classes(self) -> tuple[int, ...]:
        """Fashion-MNIST ids of the garments drawn (:attr:`garment_classes` or the spec's)."""
        if self.garment_classes is not None:
            return tuple(self.garment_classes)
        return tuple(c - 1 for c in self.spec.classes)


Sample = tuple[str, np.ndarray, np.ndarray, np.ndarray]


def make_ambiguity_split(split: str,
                         config: AmbiguityConfig = AmbiguityConfig()) -> list[Sample]:
    """Generate one split in memory.

    Split ``k`` (train, val, test = 0..2) draws its scenes and its flips from two independent
    children of ``SeedSequence(seed).spawn(3)[k]``, so changing the spec never moves a garment.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        config: sizes, seed, spec and scene ranges.

    Returns:
        ``[(name, image, label, base_label), ...]``: ``(S, S, 3)`` uint8 image, ``(S, S)`` uint8
        label (flipped for train / val with ``frozen_flips``, else equal to the base) and base
        label.

    Raises:
        DensecalInputError: unknown split.
    """
    if split not in SPLITS:
        raise input_error("split", f"expected one of {', '.join(SPLITS)}, got {split!r}")
    scene_seq, flip_seq = np.random.SeedSequence(config.seed).spawn(3)[
        SPLITS.index(split)].spawn(2)
    scene_rng, flip_rng = np.random.default_rng(scene_seq), np.random.default_rng(flip_seq)
    pool, classes = split_garments(split)
    keep = np.isin(classes, config.pool_classes)
    pool, classes = pool[keep], classes[keep]
    backgrounds = [load_texture(name) for name in BACKGROUND_NAMES]
    out = []
    for i in range(getattr(config, f"n_{split}")):
        scene = make_multi_scene(scene_rng, pool, classes, backgrounds, config.size,
                                 config.scene)
        label = (apply_flips(scene.label, config.spec, flip_rng)
                 if config.frozen_flips and split != "test" else scene.label)
        out.append((f"{split}_{i:04d}", scene.image, label, scene.label))
    return out


def _when_flipped(config: AmbiguityConfig) -> str:
    if config.frozen_flips:
        return "once, in the train / val masks written here (frozen flips)"
    return ("anew each time densecal loads a train / val image (the masks here are the base "
            "labels)")


def _readme(config: AmbiguityConfig) -> str:
    rows = "\n".join(
        f"| {c} ({CLASS_NAMES[c - 1]}) | {t} | {Fraction(p).limit_denominator(1000)} |"
        for c, (t, p) in config.spec.flips.items())
    return f"""# densecal ambiguity dataset

Multi-garment scenes ({config.size}x{config.size} px, seed {config.seed}) with injected label
ambiguity, after Kassapis et al. (ICCV 2021): each flippable class is relabelled as a whole to
its twin with the probability below, {_when_flipped(config)}. Test masks hold the base labels;
enumerate the modes with `densecal.data.synthetic.ambiguity.enumerate_modes` and the spec in
`ambiguity.json`. Masks are 8-bit class-index PNGs: 0 background, 1..10 garment class + 1
(Fashion-MNIST order), twins as listed.

| class | twin | flip probability |
|---|---|---|
{rows}

Splits: train {config.n_train}, val {config.n_val}, test {config.n_test} scenes.
Licences: Fashion-MNIST (c) 2017 Zalando SE, MIT; textures from scikit-image's sample data (see
the demo dataset's README).
"""


def write_ambiguity_dataset(out_dir: str | Path,
                            config: AmbiguityConfig = AmbiguityConfig()) -> dict[str, Path]:
    """Write ``OUT/{train,val,test}/{images,masks}/STEM.png``, ``ambiguity.json``, README.

    The whole dataset is staged and moved into place at the end
    (:func:`densecal.atomic.staged_directory`); an interrupted run leaves ``out_dir`` as it was.

    Args:
        out_dir: destination folder.
        config: sizes, seed, spec and scene ranges.

    Returns:
        ``{split: folder}``.

    Raises:
        DensecalInputError: ``out_dir`` is a file, or a non-empty folder that is not an earlier
            ambiguity dataset (a generator replaces only what it wrote).
    """
    out_dir = Path(out_dir)
    manifest = {"schema": SCHEMA, "spec": config.spec.to_dict(), "seed": config.seed,
                "size": config.size, "class_names": ["background", *CLASS_NAMES],
                "splits": {s: getattr(config, f"n_{s}") for s in SPLITS},
                "test_masks": "base",
                "train_masks": "flipped" if config.frozen_flips else "base"}
    with staged_dataset(out_dir, SCHEMA, manifest="ambiguity.json") as stage:
        for split in SPLITS:
            for folder in ("images", "masks"):
                (stage / split / folder).mkdir(parents=True)
            for name, image, label, _ in make_ambiguity_split(split, config):
                Image.fromarray(image).save(stage / split / "images" / f"{name}.png")
                Image.fromarray(label.astype(np.uint8)).save(stage / split / "masks" /
                                                             f"{name}.png")
        (stage / "ambiguity.json").write_text(json.dumps(manifest, indent=2) + "\n")
        atomic_write_text(stage / "README.md", _readme(config))
    return {split: out_dir / split for split in SPLITS}
