"""Markdown tables of evaluation results (plain dicts in, strings out).

Number format rule used by :func:`format_value` / :func:`metrics_table`:

* calibration errors and pixel accuracy (``calibration`` section, keys in :data:`PERCENT_KEYS`)
  are shown as percentages with 2 decimals and no ``%`` sign (the column label carries the
  unit, e.g. ``"ECE %"``) — the custom of the calibration papers (ASLP reports ECE in %);
* every other real number (Brier, NLL, MAE, F/E/S-measures, Dice, IoU) with 3 decimals — the
  custom of the salient-object-detection tables;
* integers (``dataset.n_images``) as integers, strings as they are;
* NaN, ``None`` (a JSON ``null``) and infinities as ``"n/a"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from densecal._checks import is_int
from densecal.errors import input_error

__all__ = [
    "DEFAULT_COLUMNS",
    "PERCENT_KEYS",
    "format_percent",
    "format_value",
    "markdown_table",
    "metrics_table",
]

#: ``(section, key)`` pairs shown as percentages.
PERCENT_KEYS: frozenset[tuple[str, str]] = frozenset(
    ("calibration", k) for k in ("ece", "mce", "oe", "ace", "accuracy")
)

#: The columns of the report's main table: ``(label, section, key)``.
DEFAULT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("ECE %", "calibration", "ece"),
    ("OE %", "calibration", "oe"),
    ("MCE %", "calibration", "mce"),
    ("ACE %", "calibration", "ace"),
    ("Acc %", "calibration", "accuracy"),
    ("Brier", "calibration", "brier"),
    ("NLL", "calibration", "nll"),
    ("MAE", "segmentation", "mae"),
    ("max F", "segmentation", "max_f"),
    ("S", "segmentation", "s_measure"),
    ("Dice", "segmentation", "dice"),
)

_NA = "n/a"


def _finite_or_none(x: Any) -> float | None:
    if x is None:
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def format_percent(x: float | None, digits: int = 2, *, sign: bool = False) -> str:
    """Show a fraction as a percentage.

    Args:
        x: a fraction (0.0321 means 3.21 %); ``None``, NaN or infinite give ``"n/a"``.
        digits: decimals after the point (>= 0).
        sign: append ``"%"`` (off by default: table headers carry the unit).

    Returns:
        The formatted string.

    Example:
        >>> format_percent(0.0321), format_percent(0.5, 1, sign=True), format_percent(None)
        ('3.21', '50.0%', 'n/a')
    """
    value = _finite_or_none(x)
    if value is None:
        return _NA
    return f"{100.0 * value:.{digits}f}" + ("%" if sign else "")


def format_value(section: str, key: str, value: Any) -> str:
    """Format one result value by the module's rule (percent / 3 decimals / int / text).

    Args:
        section: the result section (``"calibration"``, ``"segmentation"``, ``"dataset"``...).
        key: the key inside the section.
        value: the value (float, int, str, ``None``).

    Returns:
        The cell text.

    Example:
        >>> format_value("calibration", "ece", 0.0125), format_value("segmentation", "mae", 0.05)
        ('1.25', '0.050')
    """
    if isinstance(value, str):
        return value
    if is_int(value):
        return str(value)
    if (section, key) in PERCENT_KEYS:
        return format_percent(value)
    number = _finite_or_none(value)
    return _NA if number is None else f"{number:.3f}"


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table with aligned pipes.

    Each column is padded to its widest cell (at least 3 characters, the shortest valid
    separator); ``|`` inside a cell is escaped.

    Args:
        header: column titles.
        rows: rows of cell strings, each as long as ``header``.

    Returns:
        The table, lines joined by ``"\\n"``, with a trailing newline.

    Raises:
        DensecalInputError: if ``header`` is empty or a row has a different length.

    Example:
        >>> print(markdown_table(["a", "bb"], [["1", "2222"]]), end="")
        | a   | bb   |
        | --- | ---- |
        | 1   | 2222 |
    """
    if len(header) == 0:
        raise input_error("header", "needs at least one column")
    head = [_escape(str(h)) for h in header]
    body = []
    for i, row in enumerate(rows):
        if len(row) != len(head):
            raise input_error(f"rows[{i}]", f"has {len(row)} cells, header has {len(head)}")
        body.append([_escape(str(c)) for c in row])
    widths = [max(3, len(h), *(len(r[j]) for r in body)) for j, h in enumerate(head)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    lines = [line(head), line(["-" * w for w in widths])] + [line(r) for r in body]
    return "\n".join(lines) + "\n"


def metrics_table(
    runs: Mapping[str, Mapping[str, Mapping[str, Any]]],
    columns: Sequence[tuple[str, str, str]] = DEFAULT_COLUMNS,
) -> str:
    """One Markdown row per (run, split) of evaluate results.

    Args:
        runs: run name -> split name -> an evaluate result dict (schema ``densecal.evaluate/2``,
            see :mod:`densecal.report.writers`), e.g. ``{"bce": {"test": r1, "ood": r2}}``.
            Rows follow the mappings' order.
        columns: ``(label, section, key)`` triples, e.g. ``("ECE %", "calibration", "ece")``.
            Values are formatted by :func:`format_value`; a value missing from one result shows
            ``"n/a"``.

    Returns:
        The table from :func:`markdown_table` with leading columns ``Run`` and ``Split``.

    Raises:
        DensecalInputError: if ``runs`` has no result, or a column is found in no result at all
            (a misspelt section or key).
    """
    rows: list[list[str]] = []
    found = [False] * len(columns)
    for run, splits in runs.items():
        for split, result in splits.items():
            row = [str(run), str(split)]
            for j, (_label, section, key) in enumerate(columns):
                sec = result.get(section)
                if isinstance(sec, Mapping) and key in sec:
                    found[j] = True
                    row.append(format_value(section, key, sec[key]))
                else:
                    row.append(_NA)
            rows.append(row)
    if not rows:
        raise input_error("runs", "contains no (run, split) result")
    for (label, section, key), ok in zip(columns, found, strict=True):
        if not ok:
            raise input_error("columns", f"{label!r} ({section}.{key}) is in no result")
    return markdown_table(["Run", "Split", *(label for label, _, _ in columns)], rows)
