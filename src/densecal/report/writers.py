"""Result files: ``metrics.json`` (schema ``densecal.evaluate/2``), per-image CSV, ``report.md``.

Every writer is atomic (:mod:`densecal.atomic`): a file appears whole or not at all, and a
failure while serialising leaves an earlier file of the same name untouched.

The evaluate result (the contract of ``densecal evaluate``, docs/methods.md section 8) is::

    {"schema": "densecal.evaluate/2",
     "dataset": {"name": str, "n_images": int, "n_pixels": int},
     "protocol": {"n_bins": int, "confidence": str, "threshold": float, "aggregate": str,
                  "protocol": str, "target": str},
     "calibration": {"ece", "mce", "oe", "ace", "brier", "nll", "accuracy",
                     "aurc", "eaurc", "auroc", "fpr95"},
     "segmentation": {"mae", "max_f", "mean_f", "adaptive_f", "max_e", "mean_e", "s_measure",
                      "weighted_f", "dice", "iou"},
     "reliability": {"bin_lower": [...], "bin_upper": [...], "count": [...],
                     "confidence": [...], "accuracy": [...]}}

Values are fractions, never percentages. NaN (the confidence / accuracy of an empty bin) is
written as JSON ``null``; Python's ``json`` would otherwise emit the invalid token ``NaN``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from densecal.atomic import TEXT_ERRORS, atomic_path, atomic_write_text
from densecal.errors import input_error

__all__ = [
    "to_jsonable",
    "write_json",
    "write_per_image_csv",
    "write_report_md",
]

def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` to plain JSON types, recursively.

    Mappings become dicts (keys must be ``str`` or ``int``; ints become strings as JSON
    requires), lists / tuples / numpy arrays / torch tensors become lists, numpy and 0-d tensor
    scalars become Python numbers, ``Path`` becomes ``str``. Non-finite floats (NaN, ±inf)
    become ``None`` so the output is valid JSON (``null``).

    Args:
        obj: the object to convert.

    Returns:
        An object made of dict, list, str, int, float (finite), bool and None.

    Raises:
        TypeError: for an object of any other type (naming the type).

    Example:
        >>> import numpy as np
        >>> to_jsonable({"a": np.array([0.5, np.nan]), "n": np.int64(3)})
        {'a': [0.5, None], 'n': 3}
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, np.bool_):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
                key = str(int(key))
            elif not isinstance(key, str):
                raise TypeError(f"mapping key {key!r} of type {type(key).__name__} is not a "
                                "JSON object key")
            out[key] = to_jsonable(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if type(obj).__module__.split(".")[0] == "torch" and hasattr(obj, "detach"):
        return to_jsonable(obj.detach().cpu().tolist())
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as pretty JSON (indent 2, key order kept, trailing newline), atomically.

    Args:
        path: destination file; its folder is created if missing.
        obj: anything :func:`to_jsonable` accepts (NaN is written as ``null``).

    Raises:
        TypeError: if ``obj`` holds a non-serialisable object; ``path`` is then left as it was
            and no temporary file remains.
    """
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", errors=TEXT_ERRORS) as f:
        json.dump(to_jsonable(obj), f, indent=2, sort_keys=False, allow_nan=False,
                  ensure_ascii=False)
        f.write("\n")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def write_per_image_csv(path: str | Path, rows: Sequence[Mapping[str, object]]) -> None:
    """Write one CSV line per image, atomically.

    The header is the first row's keys in order; every row must have exactly those keys.
    Floats are written with ``repr`` (the shortest string that reads back to the same double),
    NaN as ``nan``, ``None`` as an empty field; lines end with ``"\\n"``.

    Args:
        path: destination file; its folder is created if missing.
        rows: per-image mappings, e.g. ``{"image": "a", "mae": 0.05, "dice": 0.9}``.

    Raises:
        DensecalInputError: if ``rows`` is empty or a row's keys differ from the first row's.
    """
    if len(rows) == 0:
        raise input_error("rows", "is empty; no per-image values to write")
    header = list(rows[0].keys())
    lines: list[list[str]] = []
    for i, row in enumerate(rows):
        if list(row.keys()) != header:
            raise input_error(f"rows[{i}]", f"keys {list(row.keys())} differ from the first "
                                            f"row's {header}")
        lines.append([_csv_cell(row[k]) for k in header])
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", errors=TEXT_ERRORS,
                                                newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(lines)


def write_report_md(path: str | Path, title: str, sections: Sequence[tuple[str, str]]) -> None:
    """Write a Markdown report: ``# title`` then ``## heading`` + body per section, atomically.

    Args:
        path: destination file; its folder is created if missing.
        title: the document title.
        sections: ``(heading, markdown body)`` pairs, in order.

    Example output for ``write_report_md(p, "Demo", [("Results", "| a |")])``::

        # Demo

        ## Results

        | a |
    """
    parts = [f"# {title}\n"]
    for heading, body in sections:
        parts.append(f"## {heading}\n\n{body.strip(chr(10))}\n")
    atomic_write_text(path, "\n".join(parts))
