"""Figures of ``densecal benchmark``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from densecal.report.figures import _figure_format, _new_figure, _save

__all__ = ["save_metric_scatter"]


def save_metric_scatter(points: Mapping[str, Sequence[tuple[float, float]]], path: str | Path,
                        *, xlabel: str, ylabel: str) -> None:
    """One scatter series per method (e.g. ECE against max-F, a point per seed), saved
    atomically.

    Args:
        points: method name -> list of (x, y) points.
        path: ``.png``, ``.pdf`` or ``.svg`` destination.
        xlabel: x-axis label.
        ylabel: y-axis label.
    """
    fmt = _figure_format(path)
    fig = _new_figure((6.0, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    for name, series in points.items():
        if series:
            xs, ys = zip(*series, strict=True)
            ax.scatter(xs, ys, label=name, s=36, alpha=0.85)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", frameon=False, loc="best")
    _save(fig, path, fmt)
