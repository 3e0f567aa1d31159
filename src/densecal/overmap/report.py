"""Over-MAP outputs: per-image CSV, audit list, metrics JSON (``densecal.overmap/1``), figure.

``metrics.json`` keys: ``schema``, ``n_images``, ``score`` (the overlap score used as Over-MAP),
``combination`` (``"product"``: ``OM * MSP``), ``accuracy`` (of the classifier),
``accuracy_by_overlap_bin`` (``[[bin lower edge, count, accuracy or null], ...]``), ``auroc`` and
``aurc`` (each ``{"overmap", "msp", "combined"}``; AUROC of misclassification detection, AURC of
the risk-coverage curve; null where undefined), ``audit_precision_at_k``
(``{"k": k, "precision": p}`` or null without a manifest of misleading images).
All values are fractions (docs/methods.md section 8).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from densecal.atomic import staged_directory
from densecal.overmap.analysis import OvermapResult
from densecal.overmap.evaluation import (
    accuracy_by_bin,
    audit_order,
    aurc,
    combine_confidence,
    misclassification_auroc,
    precision_at_k,
)
from densecal.report.writers import write_json, write_per_image_csv

__all__ = ["OVERMAP_SCHEMA", "overmap_metrics", "save_overmap_grid", "write_overmap_outputs"]

OVERMAP_SCHEMA = "densecal.overmap/1"


def overmap_metrics(result: OvermapResult, labels: np.ndarray, *, score: str = "attention_mass",
                    n_bins: int = 10, misleading: np.ndarray | None = None,
                    k: int | None = None) -> dict[str, Any]:
    """The metrics dict written to ``metrics.json`` (see the module docstring).

    Args:
        result: :func:`~densecal.overmap.analysis.analyse_images` output (with label scores
            when ``misleading`` is given).
        labels: ``(N,)`` int64 true (given) classes.
        score: overlap score used as Over-MAP.
        n_bins: overlap bins on [0, 1].
        misleading: optional ``(N,)`` bool flags of known misleading images (audit ground truth).
        k: audit depth; default the number of flagged images (R-precision).
    """
    correct = result.prediction == labels
    om = result.scores[score]
    confidences = {"overmap": om, "msp": result.msp,
                   "combined": combine_confidence(om, result.msp)}
    audit = None
    if misleading is not None and misleading.any() and result.label_scores:
        depth = int(misleading.sum()) if k is None else min(k, len(labels))
        audit = {"k": depth, "precision": precision_at_k(result.label_scores[score], misleading,
                                                         depth, result.msp),
                 "tiebreak": "max-softmax, lowest first"}
    return {
        "schema": OVERMAP_SCHEMA,
        "n_images": len(labels),
        "score": score,
        "combination": "product",
        "accuracy": float(correct.mean()),
        "accuracy_by_overlap_bin": [list(b) for b in accuracy_by_bin(om, correct, n_bins)],
        "auroc": {name: misclassification_auroc(c, correct) for name, c in confidences.items()},
        "aurc": {name: aurc(c, correct) for name, c in confidences.items()},
        "audit_precision_at_k": audit,
    }


def save_overmap_grid(images: Sequence[np.ndarray], maps: Sequence[np.ndarray],
                      masks: Sequence[np.ndarray], titles: Sequence[str],
                      path: str | Path) -> None:
    """Save rows of image | Grad-CAM over the image | mask, atomically (png / pdf / svg).

    Args:
        images: ``(H, W, 3)`` uint8 images.
        maps: ``(H, W)`` Grad-CAM maps in [0, 1].
        masks: ``(H, W)`` bool masks.
        titles: one label per row, written left of it (short lines, e.g.
            ``"name\\npred Coat\\nlabel Shirt\\nOM=0.71"``).
        path: destination file.
    """
    from densecal.report.figures import figure_format, new_figure, save_figure

    fmt = figure_format(path)
    n = len(maps)
    fig = new_figure((6.6, 2.1 * max(n, 1)))
    axes = fig.subplots(max(n, 1), 3, squeeze=False)
    for r in range(n):
        axes[r, 0].imshow(images[r])
        axes[r, 1].imshow(images[r])
        axes[r, 1].imshow(maps[r], cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
        axes[r, 2].imshow(masks[r], cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(titles[r], fontsize="x-small", rotation=0, ha="right",
                              va="center")
        for c, title in enumerate(("Image", "Grad-CAM", "Mask")):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(title, fontsize="small")
    save_figure(fig, path, fmt)


def write_overmap_outputs(out: str | Path, names: Sequence[str], classes: Sequence[str],
                          labels: np.ndarray, result: OvermapResult, *,
                          images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                          manifest: Mapping[str, str] | None = None,
                          score: str = "attention_mass", n_bins: int = 10,
                          k: int | None = None) -> dict[str, Path]:
    """Write ``per_image.csv``, ``audit.csv``, ``metrics.json`` and ``overmap_grid.png``.

    ``audit.csv`` ranks every image by its overlap under its LABEL, lowest first, ties by the
    max-softmax, lowest first (:func:`~densecal.overmap.evaluation.audit_order`); columns rank,
    name, label, overlap, max-softmax, ``cam_empty`` (1: the label's Grad-CAM is all zero, so
    the overlap 0 is undefined rather than measured), prediction, misleading reason from the
    manifest if any.

    Args:
        out: output folder, replaced as a whole (:func:`densecal.atomic.staged_directory`).
        names: image names.
        classes: class names.
        labels: ``(N,)`` given classes.
        result: the analysis (with label scores).
        images: the images (the first ``len(result.maps)`` go to the figure).
        masks: the masks (same).
        manifest: optional ``{name: reason}`` (``""`` = clean) of known misleading images.
        score: overlap score used as Over-MAP.
        n_bins: overlap bins.
        k: audit depth (default: the number of misleading images).

    Returns:
        ``{"per_image", "audit", "metrics", "figure"}`` paths.
    """
    with staged_directory(out, "overmap") as stage:
        paths = _write_overmap_files(stage, names, classes, labels, result, images=images,
                                     masks=masks, manifest=manifest, score=score,
                                     n_bins=n_bins, k=k)
    return {key: Path(out) / path.name for key, path in paths.items()}


def _write_overmap_files(out: Path, names: Sequence[str], classes: Sequence[str],
                         labels: np.ndarray, result: OvermapResult, *,
                         images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                         manifest: Mapping[str, str] | None, score: str, n_bins: int,
                         k: int | None) -> dict[str, Path]:
    reasons = [manifest.get(n, "") if manifest is not None else "" for n in names]
    misleading = np.array([bool(r) for r in reasons]) if manifest is not None else None
    rows = []
    for i, name in enumerate(names):
        row: dict[str, object] = {
            "name": name, "label": classes[labels[i]],
            "prediction": classes[result.prediction[i]],
            "correct": int(result.prediction[i] == labels[i]), "msp": float(result.msp[i])}
        row.update({s: float(v[i]) for s, v in result.scores.items()})
        row.update({f"label_{s}": float(v[i]) for s, v in result.label_scores.items()})
        rows.append(row)
    paths = {"per_image": out / "per_image.csv", "audit": out / "audit.csv",
             "metrics": out / "metrics.json", "figure": out / "overmap_grid.png"}
    write_per_image_csv(paths["per_image"], rows)
    audit_scores = result.label_scores.get(score, result.scores[score])
    order = audit_order(audit_scores, result.msp)
    empty = result.label_cam_empty if result.label_scores else result.cam_empty
    write_per_image_csv(paths["audit"], [
        {"rank": r + 1, "name": names[i], "label": classes[labels[i]],
         "label_overlap": float(audit_scores[i]), "msp": float(result.msp[i]),
         "cam_empty": int(empty[i]) if len(empty) else "",
         "prediction": classes[result.prediction[i]],
         "misleading": reasons[i]} for r, i in enumerate(order)])
    write_json(paths["metrics"], overmap_metrics(result, labels, score=score, n_bins=n_bins,
                                                 misleading=misleading, k=k))
    n_fig = len(result.maps)
    titles = [f"{names[i]}\npred {classes[result.prediction[i]]}\nlabel {classes[labels[i]]}\n"
              f"OM={result.scores[score][i]:.2f}" for i in range(n_fig)]
    save_overmap_grid(images[:n_fig], result.maps, masks[:n_fig], titles, paths["figure"])
    return paths
