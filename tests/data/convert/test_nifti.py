"""NIfTI folders -> 2-D slice datasets: pairing, orientation, normalisation, soft truth, errors."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from densecal.cli.main import main
from densecal.data.convert.nifti import (
    convert_nifti_folder,
    find_nifti_pairs,
    load_nifti_image,
    load_nifti_label,
    nifti_slices,
)
from densecal.data.convert.slicing import area_resample, crop_window, oriented_slice
from densecal.data.folder import FolderDataset
from densecal.data.readers import read_image, read_label
from densecal.errors import DensecalInputError

nib = pytest.importorskip("nibabel")

SHAPE = (12, 10, 8)


def save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def make_root(root: Path, names: tuple[str, ...] = ("a", "b"), label_dir: str = "labels",
              seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for i, name in enumerate(names):
        suffix = ".nii.gz" if i % 2 == 0 else ".nii"
        save(root / "images" / f"{name}{suffix}", rng.normal(100, 20, SHAPE).astype(np.float32))
        labels = np.zeros(SHAPE, dtype=np.uint8)
        labels[3:9, 2:7, 2:6] = 1
        labels[5:7, 4:6, 3:5] = 2
        save(root / label_dir / f"{name}{'.nii' if i % 2 == 0 else '.nii.gz'}", labels)
    return root


# ----------------------------------------------------------------------------- helpers

def test_oriented_slice_puts_a_known_voxel_on_a_known_pixel() -> None:
    volume = np.zeros(SHAPE)
    volume[2, 3, 5] = 1.0  # x = 2 (towards Right), y = 3 (Anterior), z = 5 (Superior)
    expected = {"axial": (5, (10, 12), (10 - 1 - 3, 2)),  # rows = y reversed, cols = x
                "coronal": (3, (8, 12), (8 - 1 - 5, 2)),  # rows = z reversed, cols = x
                "sagittal": (2, (8, 10), (8 - 1 - 5, 3))}  # rows = z reversed, cols = y
    for axis, (index, shape, pixel) in expected.items():
        plane = oriented_slice(volume, axis, index)
        assert plane.shape == shape
        assert [tuple(p) for p in np.argwhere(plane)] == [pixel], axis
    four = np.stack([volume, 2 * volume], axis=-1)
    assert oriented_slice(four, "axial", 5).shape == (2, 10, 12)
    assert oriented_slice(four, "axial", 5)[1, 6, 2] == 2.0
    with pytest.raises(DensecalInputError, match=r"^axis: "):
        oriented_slice(volume, "transverse", 0)


def test_area_resample_hand_cases() -> None:
    x = np.arange(16, dtype=np.float64).reshape(4, 4)
    np.testing.assert_array_equal(area_resample(x, 2, 2), [[2.5, 4.5], [10.5, 12.5]])
    # 3 -> 2: output cells cover [0, 1.5] and [1.5, 3]: weights (1, 0.5) / 1.5, (0.5, 1) / 1.5.
    np.testing.assert_allclose(area_resample(np.array([[3.0, 6.0, 9.0]]), 1, 2),
                               [[(3 + 0.5 * 6) / 1.5, (0.5 * 6 + 9) / 1.5]])
    # upsampling repeats values; the mean is preserved for any ratio
    np.testing.assert_array_equal(area_resample(np.array([[1.0, 2.0]]), 2, 4),
                                  [[1, 1, 2, 2], [1, 1, 2, 2]])
    rng = np.random.default_rng(0)
    y = rng.random((3, 7, 11))
    out = area_resample(y, 5, 3)
    assert out.shape == (3, 5, 3)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), y.mean(axis=(1, 2)))
    np.testing.assert_allclose(out[1], area_resample(y[1], 5, 3))


def test_crop_window_fills_outside() -> None:
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    np.testing.assert_array_equal(crop_window(x, -1, 1, 3, 9.0),
                                  [[9, 9, 9], [1, 2, 9], [4, 5, 9]])
    two = crop_window(np.stack([x, x]), 1, -1, 2, (7.0, 8.0))
    np.testing.assert_array_equal(two, [[[7, 3], [7, 7]], [[8, 3], [8, 8]]])


# ----------------------------------------------------------------------------- reading

def test_pairs_by_name_across_suffixes(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r", names=("b", "a", "c"))
    pairs = find_nifti_pairs(root)
    assert [p.name for p in pairs] == ["a", "b", "c"]
    assert pairs[0].image.name == "a.nii" and pairs[0].label.name == "a.nii.gz"
    assert pairs[1].image.name == "b.nii.gz" and pairs[1].label.name == "b.nii"
    masks = make_root(tmp_path / "m", names=("x",), label_dir="masks")
    assert [p.label.parent.name for p in find_nifti_pairs(masks)] == ["masks"]
    (root / "images" / "notes.txt").write_text("ignored")
    (root / "images" / ".hidden.nii").write_text("ignored")
    assert len(find_nifti_pairs(root)) == 3


def _break(root: Path, how: str) -> str:
    """Damage a valid root in one way; return a fragment the error must contain."""
    images, labels = root / "images", root / "labels"
    if how == "missing":
        return "folder not found"
    make_root(root)
    if how == "no_images":
        for p in images.iterdir():
            p.unlink()
        images.rmdir()
        return "no images/ folder"
    if how == "no_labels":
        for p in labels.iterdir():
            p.unlink()
        labels.rmdir()
        return "no labels/ (or masks/) folder"
    if how == "both":
        (root / "masks").mkdir()
        return "both labels/ and masks/"
    if how == "empty":
        for p in images.iterdir():
            p.unlink()
        return "no .nii or .nii.gz volumes"
    if how == "unpaired_image":
        save(images / "lonely.nii.gz", np.zeros(SHAPE, np.float32))
        return "lonely.nii.gz: no label volume labels/lonely.nii[.gz]"
    if how == "unpaired_label":
        save(labels / "orphan.nii", np.zeros(SHAPE, np.uint8))
        return "orphan.nii: no image volume images/orphan.nii[.gz]"
    if how == "duplicate":
        save(images / "a.nii", np.zeros(SHAPE, np.float32))
        return "duplicate volume name 'a'"
    if how == "shape":
        save(labels / "a.nii", np.zeros((12, 10, 7), np.uint8))
        return "does not match the image volume's (12, 10, 8)"
    if how == "non_integer":
        bad = np.zeros(SHAPE, np.float32)
        bad[1, 1, 1] = 0.5
        save(labels / "a.nii", bad)
        return "non-integer label value 0.5"
    if how == "negative":
        save(labels / "a.nii", np.full(SHAPE, -1, np.int16))
        return "class values must be in [0, 255]"
    if how == "too_large":
        save(labels / "a.nii", np.full(SHAPE, 300, np.int16))
        return "class values must be in [0, 255]"
    if how == "nan":
        bad = np.zeros(SHAPE, np.float32)
        bad[0, 0, 0] = np.nan
        save(labels / "a.nii", bad)
        return "finite real numbers"
    if how == "mixed":
        save(labels / "a.nii", np.full((*SHAPE, 2), 0.5, np.float32))
        return "label volumes mix kinds"
    if how == "not_summing":
        for name in ("a.nii", "b.nii.gz"):
            save(labels / name, np.full((*SHAPE, 3), 0.5, np.float32))
        return "does not sum to 1"
    if how == "prob_range":
        bad = np.zeros((*SHAPE, 2), np.float32)
        bad[..., 0], bad[..., 1] = 1.5, -0.5
        save(labels / "a.nii", bad)
        save(labels / "b.nii.gz",
             np.stack([np.ones(SHAPE), np.zeros(SHAPE)], -1).astype(np.float32))
        return "values outside [0, 1]"
    if how == "image_4d":
        save(images / "b.nii", np.zeros((*SHAPE, 2), np.float32))
        return "image volume of shape (12, 10, 8, 2)"
    if how == "separator":
        save(images / "x__y.nii", np.zeros(SHAPE, np.float32))
        save(labels / "x__y.nii", np.zeros(SHAPE, np.uint8))
        return "contains '__'"
    if how == "orientation":
        flip = np.diag([-1.0, 1.0, 1.0, 1.0])
        save(labels / "a.nii", np.zeros(SHAPE, np.uint8), flip)
        return "voxel grid (affine) differs from the image volume's"
    if how == "corrupt":
        (labels / "a.nii").write_bytes(b"not a nifti file at all" * 20)
        return "cannot be read as NIfTI"
    if how == "truncated":
        data = gzip.decompress((images / "a.nii.gz").read_bytes())
        (images / "a.nii.gz").write_bytes(gzip.compress(data[: len(data) // 2]))
        return "a.nii.gz: cannot read the voxel data"
    raise AssertionError(how)


@pytest.mark.parametrize("how", [
    "missing", "no_images", "no_labels", "both", "empty", "unpaired_image", "unpaired_label",
    "duplicate", "shape", "non_integer", "negative", "too_large", "nan", "mixed", "not_summing",
    "prob_range", "image_4d", "separator", "orientation", "corrupt",
])
def test_find_pairs_errors(tmp_path: Path, how: str) -> None:
    root = tmp_path / "root"
    fragment = _break(root, how)
    with pytest.raises(DensecalInputError) as info:
        find_nifti_pairs(root)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_root_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(DensecalInputError, match="is not a folder"):
        find_nifti_pairs(tmp_path / "f")


def test_truncated_volume_is_an_input_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    fragment = _break(root, "truncated")
    pairs = find_nifti_pairs(root, check_labels=False)
    with pytest.raises(DensecalInputError, match=fragment):
        list(nifti_slices(pairs[0].image, pairs[0].label))


def test_intensity_normalisation_against_percentiles(tmp_path: Path) -> None:
    values = np.random.default_rng(1).gamma(2.0, 50.0, SHAPE).astype(np.float32)
    path = save(tmp_path / "img.nii.gz", values)
    lo, hi = np.percentile(values.astype(np.float64), [0.5, 99.5])
    expected = (np.clip(values.astype(np.float64), lo, hi) - lo) / (hi - lo)
    np.testing.assert_allclose(load_nifti_image(path), expected, atol=1e-6)
    assert load_nifti_image(save(tmp_path / "flat.nii", np.full(SHAPE, 7.0, np.float32))).max() \
        == 0.0
    four = save(tmp_path / "four.nii", values[..., None])  # (X, Y, Z, 1) is a 3-D volume
    np.testing.assert_allclose(load_nifti_image(four), expected, atol=1e-6)


def test_reorientation_to_ras(tmp_path: Path) -> None:
    """A volume stored with x running towards the Left lands on the same pixels after
    reorientation as the same anatomy stored in RAS order."""
    labels = np.zeros(SHAPE, np.uint8)
    labels[2, 3, 5] = 1
    image = np.random.default_rng(4).random(SHAPE).astype(np.float32)
    image[2, 3, 5] = 100.0  # far above the 99.5th percentile: clipped to exactly 1
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = SHAPE[0] - 1
    slices = {}
    for name, affine, stored_l, stored_i in (
            ("ras", np.eye(4), labels, image),
            ("las", flip, labels[::-1].copy(), image[::-1].copy())):
        lab = save(tmp_path / name / "l.nii", stored_l, affine)
        img = save(tmp_path / name / "i.nii", stored_i, affine)
        slices[name] = list(nifti_slices(img, lab, "axial"))
        got = {s.index: np.argwhere(s.label).tolist() for s in slices[name] if s.label.any()}
        assert got == {5: [[6, 2]]}
        assert slices[name][5].image[6, 2] == 1.0
    for a, b in zip(slices["ras"], slices["las"], strict=True):
        np.testing.assert_array_equal(a.image, b.image)
    # image stored RAS, label stored LAS: reoriented, both land on the same grid
    mixed = list(nifti_slices(tmp_path / "ras" / "i.nii", tmp_path / "las" / "l.nii", "axial"))
    assert np.argwhere(mixed[5].label).tolist() == [[6, 2]]
    root = tmp_path / "root"
    save(root / "images" / "v.nii", image)
    save(root / "labels" / "v.nii", labels[::-1].copy(), flip)
    assert [p.name for p in find_nifti_pairs(root)] == ["v"]


def test_probability_labels_give_soft_and_argmax(tmp_path: Path) -> None:
    probs = np.random.default_rng(2).dirichlet([1.0, 1.0, 1.0], size=SHAPE).astype(np.float32)
    image = save(tmp_path / "i.nii.gz", np.random.default_rng(3).random(SHAPE).astype(np.float32))
    label = save(tmp_path / "l.nii.gz", probs)
    hard, soft = load_nifti_label(label)
    assert soft is not None and soft.shape == (3, *SHAPE) and hard.shape == SHAPE
    np.testing.assert_allclose(soft, np.moveaxis(probs, -1, 0), atol=1e-6)
    np.testing.assert_array_equal(hard, np.argmax(soft, axis=0))
    slices = list(nifti_slices(image, label, "coronal"))
    assert [s.index for s in slices] == list(range(SHAPE[1]))
    for s in slices:
        assert s.soft is not None and s.soft.shape == (3, 8, 12) and s.soft.dtype == np.float32
        np.testing.assert_allclose(s.soft, np.moveaxis(probs[:, s.index, :, :], -1, 0)
                                   .transpose(0, 2, 1)[:, ::-1], atol=1e-6)
        np.testing.assert_array_equal(s.label, np.argmax(s.soft, axis=0))


def test_skip_empty_and_resampling(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r", names=("a",))
    pair = find_nifti_pairs(root)[0]
    kept = [s.index for s in nifti_slices(pair.image, pair.label, "axial", skip_empty=True)]
    assert kept == [2, 3, 4, 5]
    # axial slice 3: (Y=10 rows, X=12 cols) padded to 12 x 12 (one row above and below), 6 x 6.
    raw = load_nifti_label(pair.label)[0]
    ones = (oriented_slice(raw, "axial", 3) == 1).astype(float)
    ref = np.zeros((12, 12))
    ref[1:11] = ones
    expected = ref.reshape(6, 2, 6, 2).mean(axis=(1, 3))
    piece = next(s for s in nifti_slices(pair.image, pair.label, "axial", size=6)
                 if s.index == 3)
    assert piece.soft is not None and piece.soft.shape == (3, 6, 6)
    np.testing.assert_allclose(piece.soft[1], expected, atol=1e-7)
    np.testing.assert_allclose(piece.soft.sum(axis=0), 1.0, atol=1e-6)
    np.testing.assert_array_equal(piece.label, np.argmax(piece.soft, axis=0))
    with pytest.raises(DensecalInputError, match=r"^num_classes: "):
        list(nifti_slices(pair.image, pair.label, size=6, num_classes=2))
    with pytest.raises(DensecalInputError, match=r"^size: "):
        list(nifti_slices(pair.image, pair.label, size=0))


def test_convert_writes_a_folder_dataset(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r")
    out = tmp_path / "out"
    assert convert_nifti_folder(root, out, axis="sagittal") == out
    stems = sorted(p.stem for p in (out / "images").glob("*.png"))
    assert stems == [f"{v}__x{i:03d}" for v in ("a", "b") for i in range(12)]
    assert not (out / "soft").exists()
    assert read_image(out / "images" / "a__x004.png").shape == (8, 10, 3)
    label = read_label(out / "masks" / "a__x005.png")
    raw = load_nifti_label(root / "labels" / "a.nii")[0]
    np.testing.assert_array_equal(label, oriented_slice(raw, "sagittal", 5))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["slices_per_volume"] == {"a": 12, "b": 12} and manifest["soft"] is False
    dataset = FolderDataset(out, labels=True, num_classes=3)
    assert len(dataset) == 24 and dataset[0]["mask"].shape == (8, 10)
    # a previous conversion is replaced whole; resampling adds soft truth
    convert_nifti_folder(root, out, axis="axial", size=16, skip_empty=True)
    stems = sorted(p.stem for p in (out / "images").glob("*.png"))
    assert stems == [f"{v}__z{i:03d}" for v in ("a", "b") for i in (2, 3, 4, 5)]
    assert sorted(p.stem for p in (out / "soft").glob("*.npy")) == stems
    soft = np.load(out / "soft" / "a__z003.npy")
    assert soft.shape == (3, 16, 16)
    np.testing.assert_array_equal(read_label(out / "masks" / "a__z003.png"),
                                  np.argmax(soft, axis=0))


def test_convert_refuses_foreign_folders_and_empty_results(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(DensecalInputError, match="not empty"):
        convert_nifti_folder(root, foreign)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    for name in ("a.nii", "b.nii.gz"):
        save(root / "labels" / name, np.zeros(SHAPE, np.uint8))
    with pytest.raises(DensecalInputError, match="no slice to write"):
        convert_nifti_folder(root, tmp_path / "none", skip_empty=True)
    assert not (tmp_path / "none").exists()


def test_missing_nibabel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(DensecalInputError, match=r"densecal\[medical\]"):
        load_nifti_image(tmp_path / "x.nii")


def test_cli_nifti(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_root(tmp_path / "r")
    out = tmp_path / "out"
    main(["data", "nifti", "--data", str(root), "--out", str(out), "--axis", "coronal",
          "--size", "8"])
    assert f"slices: {out}" in capsys.readouterr().out
    assert read_image(out / "images" / "a__y000.png").shape == (8, 8, 3)
    for argv, fragment in ((["--axis", "oblique"], "axis: expected one of"),
                           (["--size", "0"], "size: must be")):
        with pytest.raises(SystemExit) as exc:
            main(["data", "nifti", "--data", str(root), "--out", str(tmp_path / "o2"), *argv])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], err
    with pytest.raises(SystemExit) as exc:
        main(["data", "nifti", "--data", str(tmp_path / "nope"), "--out", str(out)])
    assert exc.value.code == 2 and "folder not found" in capsys.readouterr().err
