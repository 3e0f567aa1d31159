"""MNI152 brain slices: soft truth, orientation, exact area averaging, splits, corruption, files."""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from densecal.cli.main import main
from densecal.data.convert.brain import (
    BRAIN_CLASS_NAMES,
    BrainSliceConfig,
    assign_block_splits,
    brain_split_assignment,
    corrupt_image,
    load_mni152,
    make_brain_slices,
    write_brain_dataset,
)
from densecal.data.readers import read_image, read_label
from densecal.errors import DensecalInputError

nib = pytest.importorskip("nibabel")
pytest.importorskip("nilearn")

_COPY = re.compile(r"-c\d+$")
SMALL = BrainSliceConfig(size=32, stride=4, block=24, gap=4, copies=2, seed=5)


@functools.lru_cache(maxsize=3)
def _raw(kind: str) -> np.ndarray:
    """The template volume straight from the nilearn wheel, float64 in [0, 1]."""
    import importlib.util

    spec = importlib.util.find_spec("nilearn")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    path = folder / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float64) / 255.0


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("brain") / "ds"
    write_brain_dataset(out, SMALL)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_load_mni152_matches_the_raw_maps() -> None:
    t1, soft = load_mni152()
    assert t1.shape == (197, 233, 189) and t1.dtype == np.float32
    assert soft.shape == (3, 197, 233, 189) and soft.dtype == np.float32
    assert 0.0 <= t1.min() and t1.max() == 1.0
    every = (slice(None, None, 3),) * 3  # a 1/27 subsample keeps the float64 oracle fast
    gm, wm = _raw("gm")[every], _raw("wm")[every]
    bg = np.maximum(1.0 - gm - wm, 0.0)
    total = bg + gm + wm
    for k, ref in enumerate((bg, gm, wm)):
        np.testing.assert_allclose(soft[(k, *every)], ref / total, atol=2e-6)
    np.testing.assert_allclose(soft[(slice(None), *every)].sum(axis=0, dtype=np.float64), 1.0,
                               atol=1e-6)
    np.testing.assert_array_equal(t1[every], _raw("t1")[every].astype(np.float32))
    with pytest.raises(ValueError):
        soft[0, 0, 0, 0] = 1.0  # the cached volumes are read-only


@pytest.mark.parametrize(("field", "value"), [
    ("size", 4), ("size", True), ("stride", 0), ("block", 0), ("gap", -1), ("copies", 0),
    ("margin", -2), ("seed", -1), ("axes", ()), ("axes", ("axial", "axial")), ("axes", ("top",)),
    ("fractions", (0.5, 0.5)), ("fractions", (0.0, 0.5, 0.5)), ("fractions", (0.6, 0.3, 0.3)),
    ("fractions", (0.8, -0.1, 0.3)), ("min_brain_fraction", 1.0), ("bias", -0.1),
    ("noise", "poisson"), ("gamma", (1.5, 0.7)), ("gamma", (0.0, 1.0)),
    ("noise_sigma", (0.1,)), ("blur", (-1.0, 1.0)),
])
def test_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(DensecalInputError, match=f"^{field}: "):
        BrainSliceConfig(**{field: value})  # type: ignore[arg-type]


def test_config_normalises_sequences() -> None:
    config = BrainSliceConfig(axes=["axial"], gamma=[1, 2])  # type: ignore[arg-type]
    assert config.axes == ("axial",) and config.gamma == (1.0, 2.0)
    assert BrainSliceConfig(axes="coronal").axes == ("coronal",)  # type: ignore[arg-type]


def test_block_splits_hand_case() -> None:
    # 10 positions, 2 blocks of 5 of different splits: the later block loses gap=2 positions.
    kept = assign_block_splits(range(10), block=5, gap=2, fractions=(0.5, 0.5, 0.0), seed=1)
    assert sorted(kept) == [0, 1, 2, 3, 4, 7, 8, 9]
    assert len({kept[p] for p in range(5)}) == 1 and {kept[p] for p in (7, 8, 9)} != \
        {kept[0]}
    # 4 blocks, fractions 1/2, 1/4, 1/4 and no gap: 2, 1, 1 whole blocks.
    kept = assign_block_splits(range(0, 40, 2), block=10, gap=0, fractions=(0.5, 0.25, 0.25),
                               seed=3)
    assert sorted(kept) == list(range(0, 40, 2))
    per_block = [{kept[p] for p in range(b, b + 10, 2)} for b in range(0, 40, 10)]
    assert all(len(s) == 1 for s in per_block)
    assert sorted(s.pop() for s in per_block) == ["test", "train", "train", "val"]
    assert assign_block_splits([], block=3, gap=1, fractions=(1, 0, 0), seed=0) == {}


@settings(max_examples=60, deadline=None)
@given(positions=st.sets(st.integers(0, 200), min_size=1, max_size=80),
       block=st.integers(1, 30), gap=st.integers(0, 12), seed=st.integers(0, 2**32),
       shares=st.tuples(st.integers(1, 10), st.integers(0, 10), st.integers(0, 10)))
def test_block_splits_never_put_other_splits_within_gap(
        positions: set[int], block: int, gap: int, seed: int,
        shares: tuple[int, int, int]) -> None:
    fractions = tuple(s / sum(shares) for s in shares)
    kept = assign_block_splits(sorted(positions), block=block, gap=gap, fractions=fractions,
                               seed=seed)
    assert set(kept) <= positions
    items = sorted(kept.items())
    for i, (p, a) in enumerate(items):
        for q, b in items[i + 1:]:
            if q - p > gap:
                break
            assert a == b, (p, a, q, b)
    first = min(positions)
    by_block: dict[int, set[str]] = {}
    for p, split in kept.items():  # one split per block
        by_block.setdefault((p - first) // block, set()).add(split)
    assert all(len(s) == 1 for s in by_block.values())
    if gap == 0:  # nothing dropped; block counts are the largest-remainder shares
        assert set(kept) == positions
        n = len({(p - first) // block for p in positions})
        counts = [sum(1 for s in by_block.values() if s == {name})
                  for name in ("train", "val", "test")]
        assert sum(counts) == n
        if n >= 3:
            assert all(abs(c - n * f) < 1 + 1e-9 or (f > 0 and c == 1)
                       for c, f in zip(counts, fractions, strict=True))


def test_mni152_assignment_keeps_splits_apart() -> None:
    assignment = brain_split_assignment(SMALL)
    assert set(assignment) == set(SMALL.axes)
    for axis, kept in assignment.items():
        assert set(kept.values()) == {"train", "val", "test"}, axis
        positions = sorted(kept)
        assert all((p - positions[0]) % SMALL.stride == 0 for p in positions)
        for p in positions:
            near = [kept[q] for q in positions if 0 < abs(q - p) <= SMALL.gap]
            assert all(s == kept[p] for s in near), (axis, p)


def test_written_files_follow_the_conventions(written: Path) -> None:
    manifest = json.loads((written / "manifest.json").read_text())
    assert manifest["schema"] == "densecal.brain-slices/1"
    assert manifest["classes"] == list(BRAIN_CLASS_NAMES)
    assert manifest["config"]["size"] == 32 and manifest["config"]["seed"] == 5
    readme = (written / "README.md").read_text()
    assert "Louis Collins" in readme and "grey matter" in readme
    for split in ("train", "val", "test"):
        stems = sorted(p.stem for p in (written / split / "images").glob("*.png"))
        assert stems == sorted(p.stem for p in (written / split / "masks").glob("*.png"))
        assert stems == sorted(p.stem for p in (written / split / "soft").glob("*.npy"))
        per_axis = {a: sum(s.split("__")[0] == f"mni152-{a}" for s in stems) for a in SMALL.axes}
        assert per_axis == manifest["counts"][split]
        for stem in stems[::7]:
            image = read_image(written / split / "images" / f"{stem}.png")
            label = read_label(written / split / "masks" / f"{stem}.png")
            soft = np.load(written / split / "soft" / f"{stem}.npy")
            assert image.shape == (32, 32, 3) and image.dtype == np.uint8
            assert soft.shape == (3, 32, 32) and soft.dtype == np.float32
            assert soft.min() >= 0.0
            np.testing.assert_allclose(soft.sum(axis=0, dtype=np.float64), 1.0, atol=1e-5)
            np.testing.assert_array_equal(label, np.argmax(soft, axis=0))
            assert {0, 1, 2} >= set(np.unique(label).tolist())
    train = [p.stem for p in (written / "train" / "images").glob("*-c1.png")]
    assert train and all(p.with_name(p.name.replace("-c1", "")).is_file()
                         for p in (written / "train" / "images").glob("*-c1.png"))
    assert not [p for p in (written / "test" / "images").glob("*.png") if _COPY.search(p.stem)]
    assert sum(manifest["counts"]["train"].values()) == 2 * sum(
        len(manifest["positions"][a]["train"]) for a in SMALL.axes)


def _area_average_oracle(plane: np.ndarray, size: int) -> np.ndarray:
    """Exact box averages from a summed-area table: the integral of a piecewise-constant image
    is bilinear inside each pixel, so bilinear interpolation of the table at fractional cell
    edges is exact (an independent route to the same quantity as the library's matrices)."""
    side = plane.shape[0]
    table = np.zeros((side + 1, side + 1))
    table[1:, 1:] = plane.cumsum(0).cumsum(1)
    edges = np.arange(size + 1) * side / size
    lo = np.minimum(np.floor(edges).astype(int), side - 1)
    frac = edges - lo
    rows = table[lo] * (1 - frac)[:, None] + table[lo + 1] * frac[:, None]  # (size+1, side+1)
    both = rows[:, lo] * (1 - frac)[None] + rows[:, lo + 1] * frac[None]  # (size+1, size+1)
    sums = both[1:, 1:] - both[:-1, 1:] - both[1:, :-1] + both[:-1, :-1]
    return sums / (side / size) ** 2


def test_soft_truth_is_the_exact_area_average_of_the_1mm_maps(written: Path) -> None:
    """Oracle on the raw maps, oriented by hand: axial rows = anterior at the top, columns = x;
    coronal / sagittal rows = superior at the top, columns = x / y."""
    manifest = json.loads((written / "manifest.json").read_text())
    gm, wm = _raw("gm"), _raw("wm")
    cases = {"axial": ("z", lambda v, p: v[:, :, p].T[::-1]),
             "coronal": ("y", lambda v, p: v[:, p, :].T[::-1]),
             "sagittal": ("x", lambda v, p: v[p, :, :].T[::-1])}
    for axis, (letter, cut) in cases.items():
        pos = manifest["positions"][axis]["test"][0]
        w = manifest["windows"][axis]
        assert w["side"] % 32, "a non-integer ratio exercises fractional pixel overlaps"
        soft = np.load(written / "test" / "soft" / f"mni152-{axis}__{letter}{pos:03d}.npy")
        for k, vol in ((1, gm), (2, wm)):
            plane = cut(vol, pos)
            padded = np.zeros((w["side"], w["side"]))
            r0, c0 = max(w["top"], 0), max(w["left"], 0)
            r1 = min(w["top"] + w["side"], plane.shape[0])
            c1 = min(w["left"] + w["side"], plane.shape[1])
            padded[r0 - w["top"]:r1 - w["top"], c0 - w["left"]:c1 - w["left"]] = \
                plane[r0:r1, c0:c1]
            np.testing.assert_allclose(soft[k], _area_average_oracle(padded, 32), atol=2e-6,
                                       err_msg=axis)


def test_orientation_is_upright() -> None:
    """Anatomical landmarks (left-right is symmetric in this template; the exact orientation
    is checked against the hand-oriented raw maps above)."""
    clean = make_brain_slices(SMALL, corrupt=False)

    def brain(axis: str, position: int) -> np.ndarray:
        piece = min((s for s in clean if s.axis == axis),
                    key=lambda s: abs(int(s.stem[-3:]) - position))
        return piece.soft[1] + piece.soft[2]

    sagittal = brain("sagittal", 98)  # mid-line; anterior on the right, superior at the top
    assert sagittal[16:, :16].sum() > sagittal[16:, 16:].sum() + 20  # cerebellum low-back
    coronal = brain("coronal", 116)  # superior at the top: cortex above, brainstem below
    assert coronal[:16].sum() > coronal[16:].sum() + 50


def test_corruption_changes_images_never_truth() -> None:
    clean = {s.stem: s for s in make_brain_slices(SMALL, corrupt=False)}
    noisy = make_brain_slices(SMALL)
    assert {_COPY.sub("", s.stem) for s in noisy} == set(clean)
    for piece in noisy:
        ref = clean[_COPY.sub("", piece.stem)]
        np.testing.assert_array_equal(piece.soft, ref.soft)
        assert piece.split == ref.split
        assert piece.image.dtype == np.float32 and 0 <= piece.image.min() <= piece.image.max() <= 1
        assert np.abs(piece.image - ref.image).mean() > 0.02
    by_stem = {s.stem: s for s in noisy}
    pairs = [(by_stem[s], by_stem[s + "-c1"]) for s in by_stem if s + "-c1" in by_stem]
    assert pairs and all(np.abs(a.image - b.image).mean() > 0.01 for a, b in pairs)


def test_corrupt_image_identity_and_rician_floor() -> None:
    image = np.random.default_rng(0).random((20, 24))
    off = BrainSliceConfig(gamma=(1, 1), bias=0.0, contrast=(1, 1), brightness=(0, 0),
                           blur=(0, 0), noise="gaussian", noise_sigma=(0, 0))
    np.testing.assert_allclose(corrupt_image(image, np.random.default_rng(1), off), image,
                               atol=1e-7)
    # On a black image only noise remains; Rician noise there is Rayleigh: mean s*sqrt(pi/2).
    rician = replace(off, noise="rician", noise_sigma=(0.1, 0.1))
    out = corrupt_image(np.zeros((256, 256)), np.random.default_rng(2), rician)
    assert out.min() >= 0 and abs(out.mean() - 0.1 * math.sqrt(math.pi / 2)) < 0.002
    gauss = corrupt_image(np.full((256, 256), 0.5), np.random.default_rng(3),
                          replace(rician, noise="gaussian"))
    assert abs(gauss.mean() - 0.5) < 0.002 and abs(gauss.std() - 0.1) < 0.002
    a = corrupt_image(image, np.random.default_rng(4), SMALL)
    np.testing.assert_array_equal(a, corrupt_image(image, np.random.default_rng(4), SMALL))


def _best_two_threshold_accuracy(images: list[np.ndarray], labels: list[np.ndarray]) -> float:
    """Oracle accuracy of `bg < t1 <= gm < t2 <= wm` on 8-bit intensities, best (t1, t2)."""
    levels = np.concatenate([np.rint(i.ravel() * 255).astype(int) for i in images])
    truth = np.concatenate([lab.ravel() for lab in labels])
    hist = np.stack([np.bincount(levels[truth == k], minlength=256) for k in range(3)])
    below = np.concatenate([np.zeros((3, 1)), np.cumsum(hist, axis=1)], axis=1)  # < t
    t1, t2 = np.meshgrid(np.arange(257), np.arange(257), indexing="ij")
    correct = below[0][t1] + (below[1][t2] - below[1][t1]) + (below[2][256] - below[2][t2])
    correct = np.where(t2 >= t1, correct, 0)
    return float(correct.max() / truth.size)


def test_noisy_task_is_not_trivial() -> None:
    clean = [s for s in make_brain_slices(SMALL, corrupt=False) if s.split == "test"]
    noisy = [s for s in make_brain_slices(SMALL) if s.split == "test"]
    truth = [np.argmax(s.soft, axis=0) for s in clean]
    acc_clean = _best_two_threshold_accuracy([s.image for s in clean], truth)
    acc_noisy = _best_two_threshold_accuracy([s.image for s in noisy], truth)
    assert acc_clean > 0.85
    assert acc_noisy < acc_clean - 0.08, (acc_clean, acc_noisy)


def test_deterministic_bytes_and_seed_dependence(written: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    write_brain_dataset(again, SMALL)
    assert _files(again) == _files(written)
    first = {s.stem: s for s in make_brain_slices(replace(SMALL, axes=("axial",)))}
    other = {s.stem: s for s in make_brain_slices(replace(SMALL, axes=("axial",), seed=6))}
    common = sorted(set(first) & set(other))
    assert common
    for stem in common:  # truth does not depend on the seed, images do
        np.testing.assert_array_equal(first[stem].soft, other[stem].soft)
        assert not np.array_equal(first[stem].image, other[stem].image)


def test_overwrite_policy(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    tiny = replace(SMALL, size=16, axes=("coronal", "axial"))
    with pytest.raises(DensecalInputError, match="not empty"):
        write_brain_dataset(foreign, tiny)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    out = tmp_path / "out"
    write_brain_dataset(out, tiny)
    assert list((out / "val" / "images").glob("mni152-coronal__*"))
    write_brain_dataset(out, replace(tiny, axes=("axial",)))  # a previous dataset: replaced
    assert not list(out.rglob("mni152-coronal__*"))
    assert list((out / "val" / "images").glob("mni152-axial__*"))
    assert json.loads((out / "manifest.json").read_text())["config"]["axes"] == ["axial"]


def test_split_left_empty_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(DensecalInputError, match="split 'val' gets no slice"):
        write_brain_dataset(tmp_path / "x", replace(SMALL, block=1000, axes=("axial",)))
    assert not (tmp_path / "x").exists()


def test_missing_medical_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import densecal.data.convert.brain as brain

    monkeypatch.setattr(brain.importlib.util, "find_spec", lambda name: None)
    brain._mni152_cached.cache_clear()
    try:
        with pytest.raises(DensecalInputError, match=r"densecal\[medical\]"):
            load_mni152()
    finally:
        brain._mni152_cached.cache_clear()


def test_cli_brain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    main(["data", "brain", "--out", str(out), "--size", "16", "--axes", "axial,sagittal",
          "--stride", "4", "--block", "24", "--copies", "1", "--seed", "2"])
    printed = capsys.readouterr().out
    assert all(f"{split}: {out / split}" in printed for split in ("train", "val", "test"))
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert config["axes"] == ["axial", "sagittal"] and config["copies"] == 1
    assert read_image(next((out / "val" / "images").glob("*.png"))).shape == (16, 16, 3)
    for argv, fragment in ((["--noise", "speckle"], "noise: expected one of"),
                           (["--axes", ""], "--axes: expected"),
                           (["--size", "2"], "size: must be")):
        with pytest.raises(SystemExit) as exc:
            main(["data", "brain", "--out", str(tmp_path / "bad"), *argv])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], err


# ---------------------------------------------------------------------------------------------
# the dark-grey-matter rater (issue 20)


def test_rater_distribution_hand_computed() -> None:
    """Four grey-matter pixels with a flat image: I = x after smoothing, t0 the 0.4 quantile,
    s = 0.5 IQR, P(background) = Phi((t0 - I) / s); other tissue untouched."""
    from scipy.stats import norm

    from densecal.data.convert.rater import rater_distribution

    image = np.full((6, 6), 0.5)
    soft = np.zeros((3, 6, 6))
    soft[1] = 1.0  # grey matter everywhere
    soft[:, 0, 0] = (0.0, 0.2, 0.8)  # one white-matter pixel
    image[3:, :] = 0.3  # darker lower half (smoothing blurs rows 2-3 only)
    dist = rater_distribution(image, soft, quantile=0.4, sd=0.5)
    from scipy.ndimage import gaussian_filter
    smooth = gaussian_filter(image, 1.0, mode="nearest")
    grey = smooth[soft.argmax(0) == 1]
    t0 = np.quantile(grey, 0.4)
    s = 0.5 * (np.percentile(grey, 75) - np.percentile(grey, 25))
    expected = norm.cdf((t0 - smooth) / s)
    np.testing.assert_allclose(dist[0, 1:, :], expected[1:, :], atol=1e-6)
    np.testing.assert_allclose(dist[1] + dist[0], np.where(soft.argmax(0) == 1, 1.0, 0.0),
                               atol=1e-6)
    assert tuple(dist[:, 0, 0]) == (0.0, 0.0, 1.0)


def test_rater_labels_follow_the_distribution() -> None:
    """Over many raters the label frequency of each pixel is the distribution (Monte Carlo)."""
    from densecal.data.convert.rater import rater_distribution, rater_labels

    rng = np.random.default_rng(0)
    image = rng.random((8, 8))
    soft = np.zeros((3, 8, 8))
    soft[1, :, :5] = 1.0
    soft[2, :, 5:] = 1.0
    draws = np.stack([rater_labels(image, soft, rng) for _ in range(4000)])
    freq = np.stack([(draws == k).mean(0) for k in range(3)])
    np.testing.assert_allclose(freq, rater_distribution(image, soft), atol=0.03)
    assert set(np.unique(draws[:, :, 5:])) == {2}  # white matter is never relabelled


def test_rater_dataset_masks_are_rater_draws(tmp_path: Path) -> None:
    config = replace(SMALL, rater="dark-gm")
    write_brain_dataset(tmp_path / "r", config)
    relabelled, ambiguous = 0, 0
    for mask_path in sorted((tmp_path / "r" / "train" / "masks").glob("*.png")):
        mask = read_label(mask_path)
        soft = np.load(tmp_path / "r" / "train" / "soft" / f"{mask_path.stem}.npy")
        np.testing.assert_allclose(soft.sum(0), 1.0, atol=1e-6)
        picked = np.take_along_axis(soft, mask[None].astype(np.int64), 0)[0]
        assert picked.min() > 0.0  # every rater label has positive probability
        relabelled += int(((mask == 0) & (soft[1] > 0)).sum())
        ambiguous += int((soft.max(0) < 0.9).sum())
    assert relabelled > 0 and ambiguous > 0
    text = (tmp_path / "r" / "README.md").read_text()
    assert "Rater `dark-gm`" in text
    write_brain_dataset(tmp_path / "again", config)  # the same seed writes the same files
    for path in sorted((tmp_path / "r").rglob("*")):
        if path.is_file() and path.suffix in (".png", ".npy"):
            twin = tmp_path / "again" / path.relative_to(tmp_path / "r")
            assert path.read_bytes() == twin.read_bytes(), path.name
    with pytest.raises(DensecalInputError, match="rater"):
        BrainSliceConfig(rater="lenient")
