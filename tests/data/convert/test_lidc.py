"""Tests of densecal.data.convert.lidc on tiny pickles in Kohl et al.'s format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from densecal.data.convert.lidc import LIDCCrops, load_lidc_pickle, patient_id, split_by_patient
from densecal.errors import DensecalInputError

SIDE = 8


def _entry(value: float, uid: str = "1.2.3") -> dict:
    image = np.full((SIDE, SIDE), value, dtype=np.float64)
    masks = [np.zeros((SIDE, SIDE), dtype=np.uint8) for _ in range(4)]
    for g in range(4):
        masks[g][g, :] = 1  # grader g marks row g
    return {"image": image, "masks": masks, "series_uid": uid}


def _write(path: Path, data: object) -> Path:
    with path.open("wb") as f:
        pickle.dump(data, f)
    return path


@pytest.fixture
def lidc(tmp_path: Path) -> Path:
    data = {f"LIDC-IDRI-{p:04d}_slice_{s}": _entry(p + s / 10) for p in range(1, 7)
            for s in range(3)}
    return _write(tmp_path / "data_lidc.pickle", data)


def test_all_graders(lidc: Path) -> None:
    ds = LIDCCrops(lidc)
    assert len(ds) == 18
    item = ds[0]
    assert item["key"] == "LIDC-IDRI-0001_slice_0"
    assert item["image"].shape == (1, SIDE, SIDE) and item["image"].dtype == torch.float32
    assert float(item["image"][0, 0, 0]) == 1.0
    assert item["mask"].shape == (4, SIDE, SIDE)
    for g in range(4):
        assert item["mask"][g].sum(1).tolist() == [float(SIDE) * (r == g) for r in range(SIDE)]
    assert item["series_uid"] == "1.2.3"


def test_fixed_and_random_grader(lidc: Path) -> None:
    assert int(LIDCCrops(lidc, grader=2)[0]["mask"][0, 2].sum()) == SIDE
    ds = LIDCCrops(lidc, grader="random", seed=7)
    graders = [int(ds[0]["mask"][0].sum(1).argmax()) for _ in range(200)]
    assert all(ds[0]["mask"].shape == (1, SIDE, SIDE) for _ in range(2))
    counts = np.bincount(graders, minlength=4)
    assert (counts > 25).all()  # each grader ~ 50 of 200
    again = LIDCCrops(lidc, grader="random", seed=7)
    assert [int(again[0]["mask"][0].sum(1).argmax()) for _ in range(200)] == graders


def test_folder_of_pickles_is_merged(tmp_path: Path) -> None:
    _write(tmp_path / "a.pickle", {"LIDC-IDRI-0001_x": _entry(1.0)})
    _write(tmp_path / "b.pickle", {"LIDC-IDRI-0002_x": _entry(2.0)})
    assert [r[0] for r in load_lidc_pickle(tmp_path)] == ["LIDC-IDRI-0001_x", "LIDC-IDRI-0002_x"]


def test_split_by_patient_is_disjoint_and_complete(lidc: Path) -> None:
    keys = LIDCCrops(lidc).keys
    parts = split_by_patient(keys, (0.5, 1 / 6, 1 / 3), seed=1)
    assert sorted(i for p in parts for i in p) == list(range(len(keys)))
    patients = [{patient_id(keys[i]) for i in p} for p in parts]
    assert [len(p) for p in patients] == [3, 1, 2]
    assert not (patients[0] & patients[1]) and not (patients[0] & patients[2])
    assert split_by_patient(keys, (0.5, 1 / 6, 1 / 3), seed=1) == parts
    sub = LIDCCrops(lidc, indices=parts[1])
    assert len(sub) == 3 and {patient_id(k) for k in sub.keys} == patients[1]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda e: e.pop("masks"), "no 'masks' key"),
    (lambda e: e.pop("image"), "no 'image' key"),
    (lambda e: e.__setitem__("masks", e["masks"][:3]), "expected 4 grader masks, got 3"),
    (lambda e: e.__setitem__("image", np.zeros((SIDE, SIDE, 3))), "image must be 2-D"),
    (lambda e: e["masks"].__setitem__(1, np.zeros((4, 4))), "masks must be 4 x"),
    (lambda e: e["masks"][0].__setitem__((0, 0), 3), "binary"),
])
def test_malformed_entries(tmp_path: Path, mutate, message: str) -> None:
    entry = _entry(0.0)
    mutate(entry)
    path = _write(tmp_path / "bad.pickle", {"LIDC-IDRI-0001_s": entry})
    with pytest.raises(DensecalInputError, match=message):
        load_lidc_pickle(path)


def test_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(DensecalInputError, match="no LIDC pickle"):
        load_lidc_pickle(tmp_path / "missing.pickle")
    with pytest.raises(DensecalInputError, match="expected a dict"):
        load_lidc_pickle(_write(tmp_path / "list.pickle", [1, 2]))
    (tmp_path / "junk.pickle").write_bytes(b"not a pickle")
    with pytest.raises(DensecalInputError, match="cannot be read"):
        load_lidc_pickle(tmp_path / "junk.pickle")
    with pytest.raises(DensecalInputError, match="grader"):
        LIDCCrops([], grader=4)
    with pytest.raises(DensecalInputError, match="fractions"):
        split_by_patient(["a"], (0.5, 0.6))
