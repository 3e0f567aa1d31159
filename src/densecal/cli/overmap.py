"""``densecal overmap``: Over-MAP confidence of a classifier (:mod:`densecal.apps.overmap`)."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["overmap"]


def overmap(
    classifier: Path = typer.Option(..., "--classifier", help="Classifier checkpoint "
                                    "(densecal.methods.classify)."),
    data: Path = typer.Option(..., "--data", help="Classification folder (images/, labels.csv)."),
    out: Path = typer.Option(Path("densecal-overmap"), "--out", help="Output folder."),
    segmenter: Path | None = typer.Option(None, "--segmenter", help="Binary densecal saliency "
                                          "checkpoint giving the object masks."),
    masks: Path | None = typer.Option(None, "--masks", help="Folder of object masks NAME.png "
                                      "(default DATA/masks when no --segmenter)."),
    layer: str | None = typer.Option(None, "--layer", help="Grad-CAM layer (dotted name in the "
                                     "classifier module, e.g. net.trunk.5; default: last block)."),
    score: str = typer.Option("attention_mass", "--score",
                              help="attention_mass, threshold_iou or peak_in_mask."),
    tau: float = typer.Option(0.5, "--tau", help="Grad-CAM threshold of threshold_iou."),
    threshold: float = typer.Option(0.5, "--threshold", help="Segmenter foreground threshold."),
    n_bins: int = typer.Option(10, "--n-bins", help="Overlap bins."),
    k: int | None = typer.Option(None, "--k", help="Audit depth (default: number of "
                                 "misleading images in DATA/manifest.csv)."),
    figure_rows: int = typer.Option(8, "--figure-rows", help="Images in the figure grid."),
    batch_size: int = typer.Option(16, "--batch-size"),
) -> None:
    """Over-MAP: confidence from the overlap of Grad-CAM and an object mask; writes
    per_image.csv, audit.csv, metrics.json and overmap_grid.png in OUT."""
    from densecal.apps.overmap import run_overmap

    paths = run_overmap(classifier, data, out, segmenter=segmenter, masks=masks, layer=layer,
                        score=score, tau=tau, threshold=threshold, n_bins=n_bins, k=k,
                        figure_rows=figure_rows, batch_size=batch_size)
    for name, path in paths.items():
        typer.echo(f"{name:>9}: {path}")
