"""Brain slices with soft truth: the MNI152 2009a template, its tissue maps, seeded corruptions.

Source: the ICBM 2009a nonlinear symmetric template (Fonov et al., NeuroImage 2011; Fonov et al.,
NeuroImage 2009) as shipped inside the nilearn wheel (``nilearn/datasets/data/
mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz``: 197 x 233 x 189 uint8, 1 mm, brain
extracted; ``gm`` / ``wm`` are tissue probabilities scaled to 0..255). Nothing is downloaded.

Classes (shared conventions): 0 background (CSF and everything else, ``1 - GM - WM``), 1 grey
matter, 2 white matter. The soft truth of a 2-D slice is the exact area average of the 1 mm
probabilities over each output pixel (:func:`~densecal.data.convert.nifti.area_resample`), so it
carries
both the template's tissue uncertainty and the partial-volume effect of downsampling; the mask is
its argmax.

Slices (per axis): positions whose brain area (sum of GM + WM) is at least
``min_brain_fraction`` of the axis maximum, every ``stride`` mm; each is cut to one square window
per axis (the bounding box of the brain over the whole volume in that plane, plus ``margin``,
outside the volume filled with background) and area-averaged to ``size x size``, oriented as
:func:`~densecal.data.convert.nifti.oriented_slice` (anatomically upright).

Splits: :func:`assign_block_splits` (contiguous blocks of slice positions, a seeded block pattern
that hits the split fractions, ``gap`` mm dropped at every boundary between different splits).

Corruption (:func:`corrupt_image`, images only, never the truth): random gamma, smooth
multiplicative bias field, contrast / brightness jitter, mild Gaussian blur, then Gaussian or
Rician noise. Each image draws from its own generator seeded by ``(seed, axis, position, copy)``,
so the output depends only on the configuration.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from densecal._checks import check_int, parse_choice
from densecal.atomic import staged_dataset
from densecal.data.convert.rater import Rater, rater_distribution, rater_labels
from densecal.data.convert.slicing import (
    AXES,
    AXIS_LETTERS,
    area_resample,
    crop_window,
    oriented_slice,
    write_slice,
)
from densecal.errors import DensecalInputError, input_error
from densecal.types import StrEnum

__all__ = [
    "BRAIN_CLASS_NAMES",
    "BRAIN_SCHEMA",
    "BRAIN_SPLITS",
    "BrainSlice",
    "BrainSliceConfig",
    "Noise",
    "assign_block_splits",
    "brain_split_assignment",
    "corrupt_image",
    "load_mni152",
    "make_brain_slices",
    "write_brain_dataset",
]

BRAIN_CLASS_NAMES: tuple[str, ...] = ("background", "grey_matter", "white_matter")
"""Class names by index."""

BRAIN_SPLITS: tuple[str, ...] = ("train", "val", "test")
BRAIN_SCHEMA = "densecal.brain-slices/1"
_FILES = {k: f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}


class Noise(StrEnum):
    """The noise model of the MR-like corruptions (``--noise``)."""

    GAUSSIAN = "gaussian"
    RICIAN = "rician"


def _range(name: str, value: Sequence[float], lo: float, hi: float) -> tuple[float, float]:
    pair = tuple(float(v) for v in value)
    if len(pair) != 2 or not lo <= pair[0] <= pair[1] <= hi:
        raise input_error(name, f"must be (low, high) with {lo:g} <= low <= high <= {hi:g}, "
                                f"got {value!r}")
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class BrainSliceConfig:
    """How the brain-slice dataset is cut, split and corrupted (lengths in mm = voxels).

    Attributes:
        size: side of the square slices in pixels.
        axes: slicing planes, a subset of ``("axial", "coronal", "sagittal")``.
        stride: distance between used slice positions.
        block: length of the contiguous blocks of positions assigned to one split.
        gap: positions dropped at each boundary between blocks of different splits: a slice of
            one split is never within ``gap`` of a slice of another split on the same axis.
        fractions: train / val / test share of the blocks of each axis (sum 1).
        copies: differently corrupted copies of every training slice (>= 1).
        min_brain_fraction: keep positions whose GM + WM area is at least this share of the
            axis maximum.
        margin: voxels added around the brain bounding box of each plane.
        gamma: range of the random gamma exponent (drawn log-uniformly).
        bias: largest amplitude of the log bias field (the field is exp of a smooth map whose
            peak magnitude is ``bias``).
        contrast: range of the multiplicative contrast factor.
        brightness: range of the additive brightness offset.
        blur: range of the Gaussian blur sigma, in output pixels.
        noise: ``"rician"`` (magnitude MR noise) or ``"gaussian"``.
        noise_sigma: range of the noise standard deviation (intensities in [0, 1]).
        seed: master seed of the split pattern and of every corruption.
        rater: ``"none"`` (masks and soft truth are the partial-volume truth) or ``"dark-gm"``
            (a simulated rater who calls dark grey matter background: masks are one rater's
            labels per image, the soft truth is the label distribution over raters; see
            :mod:`densecal.data.convert.rater`).
        rater_quantile: the ``dark-gm`` rater's mean threshold, as a quantile of the slice's
            grey-matter intensities.
        rater_sd: the spread of the raters' thresholds, in grey-matter interquartile ranges.
    """

    size: int = 64
    axes: tuple[str, ...] = ("axial", "coronal", "sagittal")
    stride: int = 2
    block: int = 16
    gap: int = 4
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    copies: int = 2
    min_brain_fraction: float = 0.25
    margin: int = 4
    gamma: tuple[float, float] = (0.7, 1.5)
    bias: float = 0.3
    contrast: tuple[float, float] = (0.8, 1.2)
    brightness: tuple[float, float] = (-0.08, 0.08)
    blur: tuple[float, float] = (0.0, 0.8)
    noise: Noise | str = "rician"
    noise_sigma: tuple[float, float] = (0.03, 0.12)
    seed: int = 0
    rater: Rater | str = "none"
    rater_quantile: float = 0.4
    rater_sd: float = 0.5

    def __post_init__(self) -> None:
        ints = {"size": (8, 1024), "stride": (1, 64), "block": (1, 1000), "gap": (0, 1000),
                "copies": (1, 100), "margin": (0, 100), "seed": (0, 2**63 - 1)}
        for name, (lo, hi) in ints.items():
            check_int(name, getattr(self, name), low=lo, high=hi)
        axes = (self.axes,) if isinstance(self.axes, str) else tuple(self.axes)
        if not axes or len(set(axes)) != len(axes) or not set(axes) <= set(AXES):
            raise input_error("axes", f"must be distinct names among {', '.join(AXES)}, "
                                      f"got {self.axes!r}")
        object.__setattr__(self, "axes", axes)
        fractions = tuple(float(f) for f in self.fractions)
        if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0 \
                or abs(sum(fractions) - 1.0) > 1e-6:
            raise input_error("fractions", f"must be three shares (train > 0, val, test >= 0) "
                                           f"summing to 1, got {self.fractions!r}")
        object.__setattr__(self, "fractions", fractions)
        if not 0.0 <= self.min_brain_fraction < 1.0:
            raise input_error("min_brain_fraction", f"must be in [0, 1), got "
                                                    f"{self.min_brain_fraction!r}")
        if not 0.0 <= self.bias <= 2.0:
            raise input_error("bias", f"must be in [0, 2], got {self.bias!r}")
        parse_choice(Noise, self.noise, "noise", message="expected one of {choices}, got {value}")
        parse_choice(Rater, self.rater, "rater", message="expected one of {choices}, got {value}")
        if not 0.0 < self.rater_quantile < 1.0:
            raise input_error("rater_quantile", f"must be in (0, 1), got {self.rater_quantile!r}")
        if not 0.0 < self.rater_sd <= 10.0:
            raise input_error("rater_sd", f"must be in (0, 10], got {self.rater_sd!r}")
        for name, lo, hi in (("gamma", 0.05, 20.0), ("contrast", 0.0, 10.0),
                             ("brightness", -1.0, 1.0), ("blur", 0.0, 10.0),
                             ("noise_sigma", 0.0, 1.0)):
            object.__setattr__(self, name, _range(name, getattr(self, name), lo, hi))


class BrainSlice(NamedTuple):
    """One slice in memory.

    Attributes:
        split: ``"train"``, ``"val"`` or ``"test"``.
        axis: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        stem: file stem, ``mni152-<axis>__<letter><pos:03d>`` (+ ``-c<k>`` for copy k >= 1).
        image: ``(S, S)`` float32 in [0, 1].
        soft: ``(3, S, S)`` float32 soft truth [background, GM, WM], summing to 1.
    """

    split: str
    axis: str
    stem: str
    image: np.ndarray
    soft: np.ndarray


@functools.lru_cache(maxsize=1)
def _mni152_cached() -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.find_spec("nilearn")  # locate the wheel without importing nilearn
    try:
        import nibabel as nib
    except ImportError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DensecalInputError('the MNI152 brain slices need nibabel and nilearn: '
                                 'pip install "densecal[medical]"')
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    raw = {}
    for key, name in _FILES.items():
        path = folder / name
        if not path.is_file():
            raise input_error(path, "MNI152 template file missing from the nilearn install")
        raw[key] = np.asarray(nib.load(str(path)).dataobj)
    t1 = raw["t1"].astype(np.float32) / np.float32(255.0)
    soft = np.empty((3, *t1.shape), dtype=np.float32)  # filled in place: ~100 MB, one pass each
    np.divide(raw["gm"], np.float32(255.0), out=soft[1], dtype=np.float32)
    np.divide(raw["wm"], np.float32(255.0), out=soft[2], dtype=np.float32)
    np.subtract(np.float32(1.0), soft[1], out=soft[0])
    soft[0] -= soft[2]
    np.maximum(soft[0], np.float32(0.0), out=soft[0])
    soft /= soft.sum(axis=0)
    t1.flags.writeable = False
    soft.flags.writeable = False
    return t1, soft


def load_mni152() -> tuple[np.ndarray, np.ndarray]:
    """The MNI152 2009a T1 template and its 3-class soft truth, from the nilearn wheel.

    The volume axes are the file's voxel axes, which for this template are RAS (identity
    rotation, 1 mm): x towards the Right, y Anterior, z Superior.

    Returns:
        ``(t1, soft)``: ``(197, 233, 189)`` float32 T1 in [0, 1] (uint8 / 255) and
        ``(3, 197, 233, 189)`` float32 ``[bg, gm, wm]`` with ``bg = max(1 - gm - wm, 0)``, the
        three renormalised to sum to 1. Cached and read-only (copy before modifying).

    Raises:
        DensecalInputError: nibabel or nilearn missing, or the template files missing.
    """
    return _mni152_cached()


def assign_block_splits(positions: Sequence[int], *, block: int, gap: int,
                        fractions: Sequence[float], seed: int | Sequence[int]) -> dict[int, str]:
    """Assign slice positions of one axis to train / val / test by contiguous blocks.

    Position ``p`` belongs to block ``(p - min(positions)) // block``. Of the ``n`` non-empty
    blocks, ``round``-ed shares of ``fractions`` (largest remainders; every split with a positive
    fraction gets at least one block when ``n`` allows) go to each split, in a seeded random
    order. Then, walking positions in increasing order, a position is dropped when it lies within
    ``gap`` of an already kept position of another split, so for kept ``p``, ``q`` of different
    splits ``|p - q| > gap``.

    Args:
        positions: distinct slice positions (any order).
        block: block length in position units (>= 1).
        gap: minimum distance exclusive between splits (>= 0).
        fractions: three non-negative shares (train, val, test) summing to 1.
        seed: seed (or entropy sequence) of the block order.

    Returns:
        ``{position: split}`` for the kept positions.

    Example:
        >>> a = assign_block_splits(range(0, 40, 2), block=10, gap=2,
        ...                         fractions=(0.5, 0.5, 0.0), seed=0)
        >>> sorted(set(a.values()))
        ['train', 'val']
    """
    ordered = sorted(int(p) for p in positions)
    if not ordered:
        return {}
    blocks = sorted({(p - ordered[0]) // block for p in ordered})
    labels = np.repeat(np.arange(3), _block_counts(len(blocks), fractions))
    labels = np.random.default_rng(seed).permutation(labels)
    split_of_block = {b: BRAIN_SPLITS[label] for b, label in zip(blocks, labels, strict=True)}
    kept: dict[int, str] = {}
    last: dict[str, int] = {}
    for p in ordered:
        split = split_of_block[(p - ordered[0]) // block]
        if all(p - q > gap for s, q in last.items() if s != split):
            kept[p] = split
            last[split] = p
    return kept


def _block_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Largest-remainder apportionment of ``n`` blocks; positive shares get >= 1 if possible."""
    raw = [n * f for f in fractions]
    counts = [math.floor(r) for r in raw]
    for i in sorted(range(3), key=lambda i: raw[i] - counts[i], reverse=True)[:n - sum(counts)]:
        counts[i] += 1
    for i in range(3):
        donor = int(np.argmax(counts))
        if fractions[i] > 0 and counts[i] == 0 and counts[donor] > 1:
            counts[i], counts[donor] = 1, counts[donor] - 1
    return counts


def _candidate_positions(soft: np.ndarray, axis: str, config: BrainSliceConfig) -> list[int]:
    fixed = AXES[axis]
    brain = soft[1] + soft[2]
    area = brain.sum(axis=tuple(a for a in range(3) if a != fixed), dtype=np.float64)
    ok = np.nonzero(area >= config.min_brain_fraction * area.max())[0]
    return [int(p) for p in range(ok[0], ok[-1] + 1, config.stride)
            if area[p] >= config.min_brain_fraction * area.max()]


def brain_split_assignment(config: BrainSliceConfig = BrainSliceConfig()
                           ) -> dict[str, dict[int, str]]:
    """The split of every used slice position, per axis (:func:`assign_block_splits`).

    Returns:
        ``{axis: {position: split}}`` for ``config.axes``; positions are voxel indices along the
        axis.
    """
    _, soft = load_mni152()
    return {axis: assign_block_splits(_candidate_positions(soft, axis, config),
                                      block=config.block, gap=config.gap,
                                      fractions=config.fractions,
                                      seed=(config.seed, 1, AXES[axis]))
            for axis in config.axes}


def corrupt_image(image: np.ndarray, rng: np.random.Generator,
                  config: BrainSliceConfig = BrainSliceConfig()) -> np.ndarray:
    """Apply one random MR-like intensity corruption to a clean slice.

    In order: ``x ** g`` with ``log g ~ U(log gamma)``; times ``exp(B)``, ``B`` a random sum
    of low-frequency cosines ``cos(pi i u) cos(pi j v)`` (``0 <= i, j <= 2``, not both 0)
    scaled so ``max |B| = bias``; ``c * x + b``; Gaussian blur ``sigma ~ U(blur)``; noise with
    ``s ~ U(noise_sigma)``: Gaussian ``x + s n1`` or Rician ``sqrt((x + s n1)^2 + (s n2)^2)``
    (Gudbjartsson & Patz, MRM 1995); clipped to [0, 1].

    Args:
        image: ``(H, W)`` clean intensities in [0, 1].
        rng: the generator to draw from (consumed).
        config: the ranges.

    Returns:
        ``(H, W)`` float32 in [0, 1].
    """
    x = np.asarray(image, dtype=np.float64)
    h, w = x.shape
    x = x ** math.exp(rng.uniform(math.log(config.gamma[0]), math.log(config.gamma[1])))
    coef = rng.normal(size=(3, 3))
    coef[0, 0] = 0.0  # no constant term: the mean level is contrast / brightness's job
    waves = np.arange(3)[:, None] * math.pi
    field = np.einsum("ij,ih,jw->hw", coef, np.cos(waves * np.linspace(0, 1, h)),
                      np.cos(waves * np.linspace(0, 1, w)))
    x = x * np.exp(config.bias * field / max(float(np.abs(field).max()), 1e-12))
    x = rng.uniform(*config.contrast) * x + rng.uniform(*config.brightness)
    sigma_blur = rng.uniform(*config.blur)
    if sigma_blur > 0:
        x = ndimage.gaussian_filter(x, sigma_blur, mode="nearest")
    s = rng.uniform(*config.noise_sigma)
    x = x + s * rng.standard_normal(x.shape)
    if config.noise == "rician":
        x = np.hypot(x, s * rng.standard_normal(x.shape))
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _plane_window(soft: np.ndarray, axis: str, margin: int) -> tuple[int, int, int]:
    """(top, left, side) of the square window around the brain's projection in this plane."""
    brain = (soft[1] + soft[2]).max(axis=AXES[axis], keepdims=True)
    rows, cols = np.nonzero(oriented_slice(brain, axis, 0) > 0.1)
    side = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 + 2 * margin
    return (int(rows.min() + rows.max() + 1 - side) // 2,
            int(cols.min() + cols.max() + 1 - side) // 2, int(side))


def make_brain_slices(config: BrainSliceConfig = BrainSliceConfig(), *,
                      corrupt: bool = True) -> list[BrainSlice]:
    """Cut, split and (optionally) corrupt the slices in memory (module docstring).

    Args:
        config: the dataset configuration.
        corrupt: apply :func:`corrupt_image` (``config.copies`` copies per training slice);
            ``False`` gives each slice once, clean.

    Returns:
        Slices ordered by axis (``config.axes`` order), position, copy.

    Raises:
        DensecalInputError: nibabel / nilearn missing.
    """
    t1, soft = load_mni152()
    soft_xyzk = np.moveaxis(soft, 0, -1)
    out: list[BrainSlice] = []
    for axis, assignment in brain_split_assignment(config).items():
        top, left, side = _plane_window(soft, axis, config.margin)
        positions = sorted(assignment)
        # one stack per axis: a few large BLAS products instead of many tiny ones
        stack = np.stack([np.concatenate([
            crop_window(oriented_slice(t1, axis, p), top, left, side)[None],
            crop_window(oriented_slice(soft_xyzk, axis, p), top, left, side, (1.0, 0.0, 0.0))])
            for p in positions])
        stack = area_resample(stack, config.size, config.size)  # (N, 4, S, S)
        truths = (stack[:, 1:] / stack[:, 1:].sum(axis=1, keepdims=True)).astype(np.float32)
        for pos, image, truth in zip(positions, stack[:, 0], truths, strict=True):
            split = assignment[pos]
            stem = f"mni152-{axis}__{AXIS_LETTERS[axis]}{pos:03d}"
            copies = config.copies if corrupt and split == "train" else 1
            for copy in range(copies):
                picture = image.astype(np.float32)
                if corrupt:
                    rng = np.random.default_rng((config.seed, 2, AXES[axis], pos, copy))
                    picture = corrupt_image(image, rng, config)
                out.append(BrainSlice(split, axis, stem + (f"-c{copy}" if copy else ""), picture,
                                      truth))
    return out


def write_brain_dataset(out_dir: str | Path, config: BrainSliceConfig = BrainSliceConfig()
                        ) -> dict[str, Path]:
    """Write the corrupted brain slices as a multi-class folder dataset.

    Layout: ``OUT/{train,val,test}/{images,masks,soft}/STEM.{png,npy}`` (images 8-bit
    grayscale, masks = argmax of the saved float32 soft truth, soft ``(3, S, S)`` float32),
    ``OUT/README.md`` and ``OUT/manifest.json`` (schema ``densecal.brain-slices/1``: config,
    class names, counts per split and axis, positions per split and axis, and the crop window
    ``{top, left, side}`` of each axis in oriented-slice pixels). Written atomically: built in a
    staging folder and renamed into place. ``out_dir`` must be new, empty, or a previous brain
    dataset, which is then replaced whole (files the new one lacks are deleted).

    Args:
        out_dir: output folder.
        config: the dataset configuration.

    Returns:
        ``{"train": OUT/train, "val": OUT/val, "test": OUT/test}``.

    Raises:
        DensecalInputError: a non-empty ``out_dir`` that is no previous brain dataset, a
            configuration leaving a split with a positive fraction empty, nibabel / nilearn
            missing.
    """
    out_dir = Path(out_dir)
    slices = make_brain_slices(config)
    counts = {s: {a: 0 for a in config.axes} for s in BRAIN_SPLITS}
    for piece in slices:
        counts[piece.split][piece.axis] += 1
    for split, fraction in zip(BRAIN_SPLITS, config.fractions, strict=True):
        if fraction > 0 and not sum(counts[split].values()):
            raise input_error("config", f"split {split!r} gets no slice; use a smaller block "
                                        f"or gap, or more axes")
    assignment = brain_split_assignment(config)
    soft = load_mni152()[1]
    manifest = {
        "schema": BRAIN_SCHEMA, "config": asdict(config), "classes": list(BRAIN_CLASS_NAMES),
        "counts": counts,
        "positions": {a: {s: [p for p, t in sorted(assignment[a].items()) if t == s]
                          for s in BRAIN_SPLITS} for a in config.axes},
        "windows": {a: dict(zip(("top", "left", "side"), _plane_window(soft, a, config.margin),
                                strict=True)) for a in config.axes},
    }
    with staged_dataset(out_dir, BRAIN_SCHEMA) as stage:
        for piece in slices:
            write_slice(stage / piece.split, piece.stem, piece.image, *_labels(piece, config))
        for split in BRAIN_SPLITS:
            (stage / split).mkdir(exist_ok=True)
        (stage / "README.md").write_text(_readme(config, counts), encoding="utf-8")
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n",
                                             encoding="utf-8")
    return {split: out_dir / split for split in BRAIN_SPLITS}


def _labels(piece: BrainSlice, config: BrainSliceConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(mask, soft truth)`` of a slice as written: the partial-volume truth and its argmax,
    or with ``config.rater = "dark-gm"`` one seeded rater's labels and the distribution over
    raters, both computed on the image as stored (8-bit)."""
    if config.rater == Rater.NONE:
        return np.argmax(piece.soft, axis=0), piece.soft
    stored = np.rint(np.clip(piece.image, 0.0, 1.0) * 255.0) / 255.0
    rng = np.random.default_rng((config.seed, 3, zlib.crc32(piece.stem.encode())))
    options = {"quantile": config.rater_quantile, "sd": config.rater_sd}
    return (rater_labels(stored, piece.soft, rng, **options),
            rater_distribution(stored, piece.soft, **options))


def _readme(config: BrainSliceConfig, counts: dict[str, dict[str, int]]) -> str:
    rows = "\n".join(f"| {s} | {sum(counts[s].values())} | "
                     + ", ".join(f"{a} {n}" for a, n in counts[s].items()) + " |"
                     for s in BRAIN_SPLITS)
    return f"""# densecal brain slices (MNI152 2009a, soft truth)

Generated by `densecal.data.convert.brain.write_brain_dataset` (`densecal data brain`), seed
{config.seed}, {config.size}x{config.size} px. Every split folder is a multi-class folder
dataset: `images/STEM.png` (8-bit T1 slice, corrupted), `masks/STEM.png` (class index per pixel,
the argmax of the soft truth), `soft/STEM.npy` (float32 `(3, H, W)` class probabilities summing
to 1). Stems are `mni152-<axis>__<letter><position>`; extra corrupted copies of a training slice
end in `-c<k>`. The volume id (before `__`) is `mni152-<axis>`. `manifest.json` lists the
configuration, counts and slice positions.

Classes: 0 background (CSF, outside the brain; `1 - GM - WM`), 1 grey matter, 2 white matter.

| split | images | per axis |
|---|---|---|
{rows}

How it is made: the T1 template and its grey / white matter probability maps are cut into
slices every {config.stride} mm along {", ".join(config.axes)} (positions where the brain
covers at least {config.min_brain_fraction:g} of the largest slice's area), each cropped to the
brain's bounding square in its plane and area-averaged to {config.size}x{config.size}: the soft
truth is the exact mean of the 1 mm tissue probabilities under each pixel (partial volume).
Splits are contiguous blocks of {config.block} mm per axis (fractions
{"/".join(f"{f:g}" for f in config.fractions)}, seeded order) with {config.gap} mm dropped at
every boundary, so no held-out slice is within {config.gap} mm of a training slice on the same
axis. Images (never the truth) get a seeded random gamma {config.gamma}, a smooth bias field
(log amplitude {config.bias:g}), contrast {config.contrast} / brightness {config.brightness},
blur sigma {config.blur} px and {config.noise} noise sigma {config.noise_sigma};
{config.copies} differently corrupted copies of each training slice.
{_rater_text(config)}
Source and licence: ICBM 2009a Nonlinear Symmetric template (V. Fonov, A. Evans, R. McKinstry,
C. Almli, D. L. Collins, NeuroImage 2009 and 2011), as distributed inside nilearn
(https://nilearn.github.io), original at
http://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009. Template copyright (C) 1993-2009
Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill
University: use, copying, modification and distribution for any purpose and without fee are
permitted provided that this copyright notice appears in all copies; it is provided "as is"
without express or implied warranty. Keep this README with any copy of the data.
"""


def _rater_text(config: BrainSliceConfig) -> str:
    if config.rater == Rater.NONE:
        return ""
    return f"""
Rater `{config.rater}` (`densecal.data.convert.rater`): masks are NOT the argmax of the tissue
truth. A simulated rater labels grey matter whose 1-px-smoothed intensity lies below a threshold
t as background, every other pixel its tissue (argmax of the partial-volume truth); t is drawn
once per image (seeded by the stem) from N(t0, s^2), t0 the {config.rater_quantile:g} quantile
of the image's grey-matter intensities and s = {config.rater_sd:g} x their interquartile range.
Each training copy has its own rater; validation and test masks are one rater's labels too.
`soft/STEM.npy` is the label distribution over raters: one-hot tissue, with the share
Phi((t0 - I) / s) of each grey-matter pixel moved to background. This ambiguity follows image
intensity, not tissue boundaries.
"""
