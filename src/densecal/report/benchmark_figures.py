"""Figures of ``densecal benchmark``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from densecal.errors import input_error
from densecal.report.figures import figure_format, new_figure, save_figure

__all__ = ["confidence_error_map", "save_metric_scatter", "save_soft_truth_examples"]


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
    fmt = figure_format(path)
    fig = new_figure((6.0, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    for name, series in points.items():
        if series:
            xs, ys = zip(*series, strict=True)
            ax.scatter(xs, ys, label=name, s=36, alpha=0.85)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", frameon=False, loc="best")
    save_figure(fig, path, fmt)


def confidence_error_map(probs: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """Per-pixel confidence error against a soft truth: ``|max_k p_k - s_(argmax_k p_k)|``.

    The top-label confidence minus the expected accuracy of the top-label prediction under the
    soft truth (the per-pixel term whose binned mean is the soft-truth ECE).

    Args:
        probs: ``(K, H, W)`` predicted class probabilities.
        soft: ``(K, H, W)`` soft truth, a distribution over K per pixel.

    Returns:
        ``(H, W)`` float64 in [0, 1].

    Raises:
        DensecalInputError: shapes differ.

    Example:
        >>> p = np.array([[[0.75]], [[0.25]]]); s = np.array([[[0.5]], [[0.5]]])
        >>> float(confidence_error_map(p, s)[0, 0])
        0.25
    """
    if probs.shape != soft.shape or probs.ndim != 3:
        raise input_error("probs", f"shape {probs.shape} does not match soft truth {soft.shape}")
    top = probs.argmax(0)
    expected = np.take_along_axis(soft, top[None], 0)[0]
    return np.abs(probs.max(0).astype(np.float64) - expected)


def _class_rgb(maps: np.ndarray) -> np.ndarray:
    """``(K, H, W)`` class maps as an RGB image (classes 0, 1, 2 on R, G, B; K <= 3 shown)."""
    rgb = np.zeros((*maps.shape[1:], 3))
    rgb[..., : min(3, maps.shape[0])] = np.moveaxis(maps[:3], 0, -1)
    return np.clip(rgb, 0.0, 1.0)


def save_soft_truth_examples(image: np.ndarray, soft: np.ndarray,
                             predictions: Mapping[str, np.ndarray], path: str | Path) -> None:
    """One slice: image, soft truth, and each method's prediction over its confidence error.

    Top row: the image, the soft truth as RGB (class 0, 1, 2 in red, green, blue) and each
    method's class probabilities the same way; bottom row: each method's
    :func:`confidence_error_map` on a shared 0..0.5 scale, titled with its mean.

    Args:
        image: ``(H, W, 3)`` uint8 or ``(H, W)`` image.
        soft: ``(K, H, W)`` soft truth.
        predictions: method -> ``(K, H, W)`` class probabilities.
        path: ``.png``, ``.pdf`` or ``.svg`` destination.

    Raises:
        DensecalInputError: no prediction, or a shape mismatch.
    """
    if not predictions:
        raise input_error("predictions", "need at least one method's prediction")
    fmt = figure_format(path)
    cols = len(predictions) + 2
    fig = new_figure((2.1 * cols, 4.6))
    top = [fig.add_subplot(2, cols, c + 1) for c in range(cols)]
    top[0].imshow(image, cmap="gray")
    top[0].set_title("image", fontsize="small")
    top[1].imshow(_class_rgb(soft))
    top[1].set_title("soft truth", fontsize="small")
    last = None
    for c, (method, probs) in enumerate(predictions.items(), start=2):
        error = confidence_error_map(probs, soft)
        top[c].imshow(_class_rgb(probs))
        top[c].set_title(method, fontsize="small")
        ax = fig.add_subplot(2, cols, cols + c + 1)
        last = ax.imshow(error, cmap="magma", vmin=0.0, vmax=0.5)
        ax.set_title(f"|conf - acc| {error.mean():.3f}", fontsize="x-small")
        ax.set_axis_off()
    for ax in top:
        ax.set_axis_off()
    legend = fig.add_subplot(2, cols, cols + 1)  # the colour bar sits under the image
    legend.set_axis_off()
    if last is not None:
        fig.colorbar(last, ax=legend, fraction=0.8, label="confidence error")
    save_figure(fig, path, fmt)
