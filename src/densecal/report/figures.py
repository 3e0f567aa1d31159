"""Figures: reliability diagrams and prediction / confidence grids (matplotlib, Agg).

matplotlib is imported lazily, inside the functions, so ``import densecal.report`` stays light.
Figures are built as :class:`matplotlib.figure.Figure` objects attached to an Agg canvas
directly, never through ``pyplot``: rendering works headless (no display, no ``MPLBACKEND``),
and the global backend of a user's session (a notebook, a GUI) is never switched.

All inputs are plain data: the reliability bins of an evaluate result (see
:mod:`densecal.report.writers`) and numpy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from densecal._checks import check_int
from densecal.atomic import atomic_path
from densecal.errors import input_error
from densecal.report.tables import format_percent

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "figure_format",
    "new_figure",
    "plot_reliability",
    "save_classwise_reliability_grid",
    "save_figure",
    "save_prediction_grid",
    "save_reliability_grid",
    "save_risk_coverage_grid",
]

_RELIABILITY_KEYS = ("bin_lower", "bin_upper", "count", "confidence", "accuracy")
_ACC_COLOR = "#4c72b0"
_OVER_COLOR = "#d62728"  # confidence above accuracy
_UNDER_COLOR = "#2ca02c"  # confidence below accuracy
_DPI = 120
_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A Figure on its own Agg canvas (no pyplot, no global backend change).

    Args:
        figsize: ``(width, height)`` in inches.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def figure_format(path: str | Path) -> str:
    """The matplotlib format of a figure path: ``png``, ``pdf`` or ``svg`` by its suffix.

    Raises:
        DensecalInputError: any other suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _FORMATS:
        raise input_error(path, f"figure files must end in one of {sorted(_FORMATS)}")
    return _FORMATS[suffix]


def save_figure(fig: Figure, path: str | Path, fmt: str) -> None:
    """Render ``fig`` to ``path`` atomically (nothing is left behind if rendering fails).

    Args:
        fig: a figure from :func:`new_figure`.
        path: the file to write (replaced only once the figure is complete).
        fmt: the format, from :func:`figure_format`.
    """
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=_DPI, bbox_inches="tight")


def _reliability_arrays(reliability: Mapping[str, Sequence[float]],
                        where: str = "reliability") -> dict[str, np.ndarray]:
    """Validate bin statistics and return them as float arrays (``None`` read as NaN)."""
    if not isinstance(reliability, Mapping):
        raise input_error(where, "must be a mapping of bin lists, got "
                                 f"{type(reliability).__name__}")
    missing = [k for k in _RELIABILITY_KEYS if k not in reliability]
    if missing:
        raise input_error(where, f"missing key {missing[0]!r}")
    out: dict[str, np.ndarray] = {}
    for key in _RELIABILITY_KEYS:
        try:
            arr = np.asarray([np.nan if v is None else v for v in reliability[key]],
                             dtype=np.float64)
        except (TypeError, ValueError):
            raise input_error(f"{where}.{key}", "must be a list of numbers") from None
        out[key] = arr
    n = len(out["count"])
    lengths = {k: len(v) for k, v in out.items()}
    if n == 0 or any(m != n for m in lengths.values()):
        raise input_error(where, f"bin lists must be non-empty and of equal length, got {lengths}")
    count = out["count"]
    if not np.isfinite(count).all() or (count < 0).any():
        raise input_error(f"{where}.count", "must hold non-negative counts")
    filled = count > 0
    for key in ("confidence", "accuracy", "bin_lower", "bin_upper"):
        values = out[key][filled] if key in ("confidence", "accuracy") else out[key]
        if not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
            raise input_error(f"{where}.{key}", "must lie in [0, 1] (NaN allowed only in "
                                                "empty bins)")
    if (out["bin_upper"] <= out["bin_lower"]).any():
        raise input_error(where, "every bin needs bin_upper > bin_lower")
    return out


def plot_reliability(
    reliability: Mapping[str, Sequence[float]],
    ax: Axes | None = None,
    *,
    title: str | None = None,
    show_counts: bool = True,
) -> Axes:
    """Draw a reliability diagram from bin statistics only.

    Bars: the accuracy of each non-empty bin, at the bin's position and width (Guo et al., ICML
    2017, Fig. 1; DeGroot & Fienberg 1983). On each bar the gap between accuracy and the bin's
    mean confidence is shaded: red hatched above the bar where confidence exceeds accuracy
    (over-confidence, what OE weighs), green below the top where it falls short
    (under-confidence). The dashed diagonal is perfect calibration. With ``show_counts`` a strip
    below the diagram shows the number of pixels per bin on a log scale (the weights of ECE).

    Args:
        reliability: the ``reliability`` section of an evaluate result: equal-length lists
            ``bin_lower``, ``bin_upper``, ``count``, ``confidence``, ``accuracy``; empty bins
            have ``count`` 0 and NaN (or ``None``, as read back from JSON) confidence / accuracy.
        ax: axes to draw into (its space is split when ``show_counts``); a new figure on an
            Agg canvas when ``None`` (reach it with ``ax.figure``).
        title: axes title.
        show_counts: add the log-scale bin-count strip.

    Returns:
        The axes holding the diagram. Its first bar container (``ax.containers[0]``) holds the
        accuracy bars, one per non-empty bin.

    Raises:
        DensecalInputError: for missing keys, lists of different lengths, negative counts,
            values outside [0, 1], or NaN in a non-empty bin.
    """
    rel = _reliability_arrays(reliability)
    if ax is None:
        ax = new_figure((4.2, 4.8 if show_counts else 4.2)).add_subplot()
    lo, hi, count = rel["bin_lower"], rel["bin_upper"], rel["count"]
    filled = count > 0
    centre, width = (lo + hi) / 2.0, hi - lo
    conf, acc = rel["confidence"], rel["accuracy"]
    ax.bar(centre[filled], acc[filled], width=width[filled], color=_ACC_COLOR,
           edgecolor="black", linewidth=0.6, label="Accuracy")
    gap = np.where(filled, conf - acc, 0.0)
    for mask, color, hatch, label in ((gap > 0, _OVER_COLOR, "//", "Over-confidence"),
                                      (gap < 0, _UNDER_COLOR, "\\\\", "Under-confidence")):
        if mask.any():
            ax.bar(centre[mask], gap[mask], bottom=acc[mask], width=width[mask], color=color,
                   alpha=0.35, edgecolor=color, hatch=hatch, linewidth=0.8, label=label)
    x0, x1 = float(lo.min()), float(hi.max())
    ax.plot([x0, x1], [x0, x1], linestyle="--", color="0.3", linewidth=1.0,
            label="Perfect calibration")
    ax.set_xlim(x0, x1)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("Accuracy")
    ax.legend(loc="upper left", fontsize="small", frameon=False)
    if title is not None:
        ax.set_title(title)
    if not show_counts:
        ax.set_xlabel("Confidence")
        return ax
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    strip = make_axes_locatable(ax).append_axes("bottom", size="28%", pad=0.1, sharex=ax)
    ax.tick_params(labelbottom=False)
    strip.bar(centre[filled], count[filled], width=width[filled], color="0.6",
              edgecolor="black", linewidth=0.4)
    if filled.any():
        from matplotlib.ticker import LogLocator, NullFormatter

        strip.set_yscale("log")
        strip.set_ylim(bottom=max(0.5, 0.5 * float(count[filled].min())))
        strip.yaxis.set_major_locator(LogLocator(base=10.0, numticks=3))
        strip.yaxis.set_minor_formatter(NullFormatter())
    strip.set_xlabel("Confidence")
    strip.set_ylabel("Pixels")
    return ax


def _check_names(given: Mapping[str, Any] | None, runs: Mapping[str, Any], arg: str) -> None:
    if given is not None:
        unknown = [k for k in given if k not in runs]
        if unknown:
            raise input_error(arg, f"names a run that is not in runs: {unknown[0]!r}")


def save_reliability_grid(
    runs: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | Path,
    *,
    titles: Mapping[str, str] | None = None,
    ece: Mapping[str, float] | None = None,
) -> None:
    """Save reliability diagrams of several runs side by side (one panel per run), atomically.

    Args:
        runs: run name -> reliability bins (as for :func:`plot_reliability`), e.g.
            ``{"BCE": rel_bce, "ASLP": rel_aslp}``; panels follow the mapping's order.
        path: destination ``.png`` (120 dpi), ``.pdf`` or ``.svg``; folder created if missing.
        titles: run name -> panel title (default: the run name).
        ece: run name -> ECE as a fraction, appended to the title as a percentage.

    Raises:
        DensecalInputError: for no runs, an unsupported suffix, a name in ``titles`` / ``ece``
            that is not a run, or bad bins (see :func:`plot_reliability`). Nothing is written.
    """
    fmt = figure_format(path)
    if len(runs) == 0:
        raise input_error("runs", "is empty; nothing to plot")
    _check_names(titles, runs, "titles")
    _check_names(ece, runs, "ece")
    for name, rel in runs.items():
        _reliability_arrays(rel, where=f"runs[{name!r}]")
    fig = new_figure((4.2 * len(runs), 4.8))
    axes = fig.subplots(1, len(runs), squeeze=False)[0]
    for ax, (name, rel) in zip(axes, runs.items(), strict=True):
        title = (titles or {}).get(name, name)
        if ece is not None and name in ece:
            title = f"{title} — ECE {format_percent(ece[name], sign=True)}"
        plot_reliability(rel, ax, title=title)
    save_figure(fig, path, fmt)


def save_risk_coverage_grid(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | Path,
    *,
    aurc: Mapping[str, float] | None = None,
) -> None:
    """Save risk-coverage curves side by side (one panel per run or split), atomically.

    Each panel plots the error rate among the most confident pixels (risk) against the share of
    pixels kept (coverage), with the oracle that ranks every error last dashed; the area under
    the solid curve is AURC (Geifman et al., ICLR 2019). Coverage and risk in %.

    Args:
        curves: name -> ``{"coverage", "risk", "oracle_risk"}`` lists of fractions (as
            :meth:`densecal.metrics.PixelCalibration.risk_coverage` gives them).
        path: destination ``.png`` (120 dpi), ``.pdf`` or ``.svg``; folder created if missing.
        aurc: name -> AURC as a fraction, appended to the title as a percentage.

    Raises:
        DensecalInputError: for no curves, an unsupported suffix, a name in ``aurc`` that is
            not a curve, or lists of different lengths. Nothing is written.
    """
    fmt = figure_format(path)
    if len(curves) == 0:
        raise input_error("curves", "is empty; nothing to plot")
    _check_names(aurc, curves, "aurc")
    for name, curve in curves.items():
        lengths = {len(curve[k]) for k in ("coverage", "risk", "oracle_risk")}
        if len(lengths) != 1:
            raise input_error(f"curves[{name!r}]", "coverage, risk and oracle_risk differ in "
                                                   "length")
    fig = new_figure((4.2 * len(curves), 4.0))
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, (name, curve) in zip(axes, curves.items(), strict=True):
        cov = 100 * np.concatenate(([0.0], np.asarray(curve["coverage"], np.float64)))
        risk = np.asarray(curve["risk"], np.float64)
        oracle = np.asarray(curve["oracle_risk"], np.float64)
        if len(risk):
            ax.step(cov, 100 * np.concatenate((risk[:1], risk)), where="pre",
                    color=_ACC_COLOR, label="model")
            ax.step(cov, 100 * np.concatenate((oracle[:1], oracle)), where="pre",
                    color="0.4", linestyle="--", label="oracle")
        title = name
        if aurc is not None and name in aurc:
            title = f"{name} — AURC {format_percent(aurc[name])} %"
        ax.set(xlim=(0, 100), ylim=(0, None), xlabel="coverage (%)", ylabel="risk (%)",
               title=title)
        ax.legend(loc="upper left", fontsize="small")
    save_figure(fig, path, fmt)


def _grid_map(x: Any, where: str, shape: tuple[int, ...] | None) -> np.ndarray:
    """A finite float map with values in [0, 1] (uint8 images scaled by 1/255)."""
    arr = np.asarray(x)
    if arr.dtype == np.uint8:
        arr = arr / 255.0
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise input_error(where, "is not a numeric array") from None
    if shape is not None and arr.shape[:2] != shape:
        raise input_error(where, f"shape {arr.shape} does not match the image's {shape}")
    if arr.size == 0 or not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise input_error(where, "must be a non-empty finite map with values in [0, 1]")
    return arr


def _prediction_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    if len(rows) == 0:
        raise input_error("rows", "is empty; nothing to plot")
    preds = [k for k in rows[0] if isinstance(k, str) and k.startswith("pred/")]
    if not preds:
        raise input_error("rows[0]", "needs at least one prediction under a 'pred/<name>' key")
    for i, row in enumerate(rows):
        for key in ("image", "mask"):
            if key not in row:
                raise input_error(f"rows[{i}]", f"missing key {key!r}")
        extra = set(row) - {"image", "mask", "name", *preds}
        row_preds = [k for k in row if isinstance(k, str) and k.startswith("pred/")]
        if extra or row_preds != preds:
            raise input_error(f"rows[{i}]", f"keys {sorted(map(str, row))} differ from "
                                            f"image, mask, name, {preds}")
    return preds


def save_prediction_grid(
    rows: Sequence[Mapping[str, np.ndarray]],
    path: str | Path,
    *,
    column_titles: Sequence[str] | None = None,
) -> None:
    """Save a grid of images, truths, predictions and confidences, atomically.

    One row per image; columns: image | ground truth | for each method, its prediction q
    (grey, 0 to 1) and its confidence max(q, 1 − q) (magma, 0.5 to 1; the top-label confidence
    of docs/methods.md section 7).

    Args:
        rows: per image a mapping with ``"image"`` (``(H, W, 3)`` or ``(H, W)``, uint8 or float
            in [0, 1]), ``"mask"`` (``(H, W)`` in [0, 1]), one or more ``"pred/<method>"``
            maps (``(H, W)`` in [0, 1]; the same methods in the same order on every row) and an
            optional ``"name"`` shown beside the row.
        path: destination ``.png`` (120 dpi), ``.pdf`` or ``.svg``; folder created if missing.
        column_titles: replaces the default titles (``Image``, ``Ground truth``, then
            ``"<method> q"`` and ``"<method> conf."``); one per column.

    Raises:
        DensecalInputError: for no rows, missing / unexpected / inconsistent keys, shape
            mismatches, values outside [0, 1], a wrong number of column titles or an
            unsupported suffix. Nothing is written.
    """
    fmt = figure_format(path)
    preds = _prediction_keys(rows)
    methods = [k[len("pred/"):] for k in preds]
    titles = ["Image", "Ground truth"]
    for m in methods:
        titles += [f"{m} q", f"{m} conf."]
    if column_titles is not None:
        if len(column_titles) != len(titles):
            raise input_error("column_titles", f"needs {len(titles)} titles, got "
                                               f"{len(column_titles)}")
        titles = [str(t) for t in column_titles]
    panels: list[list[tuple[np.ndarray, dict[str, Any]]]] = []
    for i, row in enumerate(rows):
        image = _grid_map(row["image"], f"rows[{i}]['image']", None)
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise input_error(f"rows[{i}]['image']", f"must be (H, W, 3) or (H, W), got "
                                                     f"{image.shape}")
        hw = image.shape[:2]
        line = [(image, {"cmap": "gray", "vmin": 0.0, "vmax": 1.0})]
        for key in ("mask", *preds):
            m = _grid_map(row[key], f"rows[{i}][{key!r}]", hw)
            if m.ndim != 2:
                raise input_error(f"rows[{i}][{key!r}]", f"must be (H, W), got {m.shape}")
            line.append((m, {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}))
            if key != "mask":
                line.append((np.maximum(m, 1.0 - m), {"cmap": "magma", "vmin": 0.5, "vmax": 1.0}))
        panels.append(line)
    h, w = panels[0][0][0].shape[:2]
    fig = new_figure((2.0 * len(titles), (2.0 * h / w + 0.3) * len(rows)))
    axes = fig.subplots(len(rows), len(titles), squeeze=False,
                        gridspec_kw={"wspace": 0.05, "hspace": 0.1})
    for r, line in enumerate(panels):
        for c, (data, style) in enumerate(line):
            ax = axes[r, c]
            ax.imshow(data, interpolation="nearest", **style)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize="small")
        if "name" in rows[r]:
            axes[r, 0].set_ylabel(str(rows[r]["name"]), fontsize="small")
    save_figure(fig, path, fmt)


def _class_rows(values: Any, where: str) -> list[list[float]]:
    """A ``(C, n_bins)`` table (tensor, array or nested lists; ``None`` read as NaN) as lists."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    try:
        rows = [[np.nan if v is None else float(v) for v in row] for row in values]
    except TypeError:
        raise input_error(where, "must be a (classes, bins) table of numbers") from None
    return rows


def save_classwise_reliability_grid(
    reliability: Mapping[str, Sequence[Any]],
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    max_classes: int = 12,
) -> None:
    """Save one small reliability diagram per class, from per-class bin statistics, atomically.

    Each panel is :func:`plot_reliability` on one class's row: mean p_k against the frequency
    of class k in each equal-width bin of p_k (the bins behind ``ece_class``; Kull et al. 2019).
    Panels are laid out 4 per row, in class order.

    Args:
        reliability: per-class bins as returned by
            :meth:`densecal.metrics.PixelCalibration.reliability_classwise` or
            ``reliability_bins(..., per_class=True)``: ``bin_lower`` / ``bin_upper``
            ``(n_bins,)`` and ``count`` / ``confidence`` / ``accuracy`` ``(C, n_bins)``
            (tensors, arrays or nested lists; NaN or ``None`` in empty bins).
        path: destination ``.png`` (120 dpi), ``.pdf`` or ``.svg``; folder created if missing.
        class_names: one title per class (default ``"class k"``).
        max_classes: draw only the first ``max_classes`` classes (>= 1).

    Raises:
        DensecalInputError: for an unsupported suffix, missing keys, tables that are not
            ``(C, n_bins)``, a wrong number of class names, ``max_classes`` < 1, or bad bins
            (see :func:`plot_reliability`). Nothing is written.
    """
    fmt = figure_format(path)
    if not isinstance(reliability, Mapping):
        raise input_error("reliability", "must be a mapping of per-class bin tables, got "
                                         f"{type(reliability).__name__}")
    missing = [k for k in _RELIABILITY_KEYS if k not in reliability]
    if missing:
        raise input_error("reliability", f"missing key {missing[0]!r}")
    check_int("max_classes", max_classes, low=1, problem="expected an integer >= 1")
    tables = {k: _class_rows(reliability[k], f"reliability.{k}")
              for k in ("count", "confidence", "accuracy")}
    n_classes = len(tables["count"])
    if n_classes == 0 or any(len(t) != n_classes for t in tables.values()):
        raise input_error("reliability", "count, confidence and accuracy need one row per "
                                         "class (the same number of rows)")
    names = [f"class {k}" for k in range(n_classes)] if class_names is None else [
        str(name) for name in class_names
    ]
    if len(names) != n_classes:
        raise input_error("class_names", f"needs {n_classes} names, got {len(names)}")
    shown = min(n_classes, max_classes)
    rows = []
    for k in range(shown):
        row = {"bin_lower": reliability["bin_lower"], "bin_upper": reliability["bin_upper"],
               **{key: table[k] for key, table in tables.items()}}
        row = {key: (v.tolist() if hasattr(v, "tolist") else v) for key, v in row.items()}
        _reliability_arrays(row, where=f"reliability[{names[k]!r}]")
        rows.append(row)
    n_cols = min(4, shown)
    n_rows = -(-shown // n_cols)
    fig = new_figure((3.2 * n_cols, 3.6 * n_rows))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < shown:
            plot_reliability(rows[k], ax, title=names[k], show_counts=False)
        else:
            ax.set_axis_off()
    save_figure(fig, path, fmt)
