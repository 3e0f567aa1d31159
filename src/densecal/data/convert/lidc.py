"""LIDC-IDRI 128 x 128 lesion crops with four graders, as released by Kohl et al. (2018).

The release of "A Probabilistic U-Net for Segmentation of Ambiguous Images" is a pickled dict
(possibly split over several ``*.pickle`` files) mapping a slice key to::

    {"image": (128, 128) float array, "masks": [4 x (128, 128) binary arrays],
     "series_uid": str}

(the layout read by the community PyTorch port, stefanknegt/Probabilistic-Unet-Pytorch,
``load_LIDC_data.py``). Keys start with the patient id, ``LIDC-IDRI-NNNN``; a split by patient
keeps all slices of a patient on one side, as Kohl et al.'s 8882 / 1996 / 1992 split does.

Security: a pickle can name any callable to run while it is read. The loader admits only what the
release holds (dicts, lists, strings, numbers and NumPy arrays) and refuses a file that names
anything else, so opening an untrusted pickle runs no code.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from densecal.errors import input_error

__all__ = ["N_GRADERS", "LIDCCrops", "load_lidc_pickle", "patient_id", "split_by_patient"]

N_GRADERS = 4
_PATIENT = re.compile(r"LIDC-IDRI-\d+")
_Record = tuple[str, np.ndarray, np.ndarray, str]


def patient_id(key: str) -> str:
    """The patient id of a slice key: its ``LIDC-IDRI-NNNN`` part, else the text before ``_``.

    Example:
        >>> patient_id("LIDC-IDRI-0001_slice_12")
        'LIDC-IDRI-0001'
    """
    match = _PATIENT.search(key)
    return match.group(0) if match else key.split("_", 1)[0]


def _check_record(where: str, key: object, value: object) -> _Record:
    if not isinstance(value, dict):
        raise input_error(where, f"entry {key!r} is not a dict")
    for field in ("image", "masks"):
        if field not in value:
            raise input_error(where, f"entry {key!r} has no {field!r} key")
    image = np.asarray(value["image"], dtype=np.float32)
    if image.ndim != 2:
        raise input_error(where, f"entry {key!r}: image must be 2-D, got shape {image.shape}")
    masks = value["masks"]
    if not isinstance(masks, (list, tuple, np.ndarray)) or len(masks) != N_GRADERS:
        n = len(masks) if hasattr(masks, "__len__") else "no"
        raise input_error(where, f"entry {key!r}: expected {N_GRADERS} grader masks, got {n}")
    shapes = [np.shape(m) for m in masks]
    if any(shape != image.shape for shape in shapes):
        raise input_error(where, f"entry {key!r}: masks must be {N_GRADERS} x {image.shape}, "
                                 f"got shapes {shapes}")
    stacked = np.stack([np.asarray(m) for m in masks])
    if not np.isin(stacked, (0, 1)).all():
        raise input_error(where, f"entry {key!r}: masks must be binary (0 / 1)")
    return str(key), image, stacked.astype(np.uint8), str(value.get("series_uid", ""))


_ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
})


class _SafeUnpickler(pickle.Unpickler):
    """Builds plain containers and NumPy arrays only; any other callable is refused."""

    def find_class(self, module: str, name: str) -> object:
        numpy_dtype = module in ("numpy.dtypes", "numpy._core.dtypes") and name.endswith("DType")
        if (module, name) in _ALLOWED_GLOBALS or numpy_dtype:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused: it names {module}.{name}, which could run code")


def load_lidc_pickle(path: str | Path) -> list[_Record]:
    """Read and validate the LIDC pickle(s).

    Args:
        path: one pickle file, or a folder whose ``*.pickle`` files are read in name order and
            merged.

    Returns:
        ``[(key, image, masks, series_uid), ...]`` sorted by key: ``image`` ``(H, W)`` float32,
        ``masks`` ``(4, H, W)`` uint8 in {0, 1}.

    Raises:
        DensecalInputError: missing path, unreadable pickle, not a dict, an entry without
            ``image`` / ``masks``, a non-2-D image, not 4 masks, mask shape != image shape,
            non-binary masks, or no entries.
    """
    path = Path(path)
    files = sorted(path.glob("*.pickle")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise input_error(path, "no LIDC pickle found")
    records: list[_Record] = []
    for file in files:
        try:
            with file.open("rb") as handle:
                data = _SafeUnpickler(handle).load()
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as err:
            raise input_error(file, f"cannot be read as a pickle ({err})") from err
        if not isinstance(data, dict):
            raise input_error(file, f"expected a dict of slices, got {type(data).__name__}")
        records.extend(_check_record(str(file), k, v) for k, v in data.items())
    if not records:
        raise input_error(path, "the pickle holds no slices")
    return sorted(records, key=lambda r: r[0])


def split_by_patient(keys: Sequence[str], fractions: Sequence[float] = (0.7, 0.15, 0.15),
                     seed: int = 0) -> list[list[int]]:
    """Split slice indices into groups with disjoint patients.

    Patients (from :func:`patient_id`) are shuffled with ``numpy.random.default_rng(seed)`` and
    cut at the cumulative ``fractions`` of the patient count (rounded), so every slice of a
    patient lands in the same part. Kohl et al.'s split is roughly (0.694, 0.156, 0.156) of
    slices.

    Args:
        keys: slice keys.
        fractions: positive fractions summing to 1, one per part.
        seed: shuffle seed.

    Returns:
        One sorted list of indices into ``keys`` per fraction.

    Raises:
        DensecalInputError: fractions not positive or not summing to 1.

    Example:
        >>> parts = split_by_patient(["LIDC-IDRI-0001_a", "LIDC-IDRI-0001_b", "LIDC-IDRI-0002_a"],
        ...                          (0.5, 0.5))
        >>> sorted(len(p) for p in parts)
        [1, 2]
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or fr.size == 0 or (fr <= 0).any() or abs(fr.sum() - 1.0) > 1e-9:
        raise input_error("fractions", f"expected positive fractions summing to 1, got "
                                       f"{list(fractions)}")
    patients = sorted({patient_id(k) for k in keys})
    order = np.random.default_rng(seed).permutation(len(patients))
    cuts = np.rint(np.cumsum(fr) * len(patients)).astype(int)
    part_of = {}
    start = 0
    for part, stop in enumerate(cuts):
        for p in order[start:stop]:
            part_of[patients[p]] = part
        start = stop
    parts: list[list[int]] = [[] for _ in fr]
    for i, key in enumerate(keys):
        parts[part_of[patient_id(key)]].append(i)
    return parts


class LIDCCrops(Dataset):
    """Torch dataset over the LIDC crops with their four grader masks.

    Items are dicts ``{"image": (1, H, W) float32, "mask": ..., "key": str,
    "series_uid": str}`` where ``mask`` is ``(4, H, W)`` float32 (``grader="all"``) or the
    ``(1, H, W)`` float32 mask of one grader. With ``grader="random"`` the grader is drawn per
    access from ``numpy.random.default_rng((seed, index, access_count))``: reproducible for a
    given seed and order of accesses, and a fresh draw at each epoch (CAR's "one grader drawn per
    step"). An int ``grader`` always returns that grader.

    Args:
        source: a pickle / folder of pickles (see :func:`load_lidc_pickle`) or its records.
        grader: ``"all"``, ``"random"`` or a grader index in 0..3.
        indices: restrict to these record indices (e.g. from :func:`split_by_patient`).
        seed: seed of the random grader draws.

    Raises:
        DensecalInputError: bad pickle or bad ``grader``.
    """

    def __init__(self, source: str | Path | Sequence[_Record], grader: str | int = "all",
                 indices: Sequence[int] | None = None, seed: int = 0) -> None:
        records = (load_lidc_pickle(source) if isinstance(source, (str, Path))
                   else list(source))
        if grader not in ("all", "random") and not (
                isinstance(grader, int) and 0 <= grader < N_GRADERS):
            raise input_error("grader", f"expected 'all', 'random' or 0..{N_GRADERS - 1}, "
                                        f"got {grader!r}")
        self.records = records if indices is None else [records[i] for i in indices]
        self.grader = grader
        self.seed = seed
        self._accesses = np.zeros(len(self.records), dtype=np.int64)

    @property
    def keys(self) -> list[str]:
        """Slice keys, in item order."""
        return [r[0] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        key, image, masks, uid = self.records[index]
        if self.grader == "all":
            mask = masks
        else:
            g = self.grader
            if g == "random":
                count = int(self._accesses[index])
                self._accesses[index] += 1
                g = int(np.random.default_rng((self.seed, index, count)).integers(N_GRADERS))
            mask = masks[g:g + 1]
        return {"image": torch.from_numpy(image)[None].clone(),
                "mask": torch.from_numpy(mask.astype(np.float32)), "key": key,
                "series_uid": uid}
