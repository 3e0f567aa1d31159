"""``densecal overmap`` and ``densecal data finegrained`` (METHODS.md section 6).

The lead registers them: ``app.command("overmap")(overmap)`` on the main app and
``data_app.command("finegrained")(finegrained_data)`` on ``densecal data``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import typer

__all__ = ["finegrained_data", "overmap"]


def _manifest(data: Path) -> dict[str, str] | None:
    path = data / "manifest.csv"
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as f:
        return {row["name"]: row.get("reason", "") or "" for row in csv.DictReader(f)}


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
    from densecal.data.classification import read_classification_folder
    from densecal.data.readers import read_image
    from densecal.errors import input_error
    from densecal.methods.classify import load_classifier
    from densecal.overmap import (
        SCORES,
        analyse_images,
        masks_from_folder,
        masks_from_segmenter,
        write_overmap_outputs,
    )

    if score not in SCORES:
        raise input_error("--score", f"expected one of {', '.join(SCORES)}, got {score!r}")
    if segmenter is not None and masks is not None:
        raise input_error("--masks", "give --segmenter or --masks, not both")
    module = load_classifier(classifier)
    folder = read_classification_folder(data)
    if folder.classes != tuple(module.classes):
        raise input_error(data, f"classes {list(folder.classes)} differ from the classifier's "
                                f"{module.classes}")
    class_ids = folder.class_ids
    images = [read_image(p) for p in folder.paths]
    if segmenter is not None:
        object_masks = masks_from_segmenter(segmenter, images, threshold, batch_size)
    else:
        object_masks = masks_from_folder(masks or data / "masks", folder.names,
                                         [im.shape[:2] for im in images])
    layer_name = layer[len("net."):] if layer and layer.startswith("net.") else layer
    result = analyse_images(module.net, images, object_masks, module.config.image_size,
                            class_ids, layer=layer_name, tau=tau, batch_size=batch_size,
                            keep_maps=figure_rows)
    paths = write_overmap_outputs(out, folder.names, folder.classes, class_ids, result,
                                  images=images, masks=object_masks, manifest=_manifest(data),
                                  score=score, n_bins=n_bins, k=k)
    for name, path in paths.items():
        typer.echo(f"{name:>9}: {path}")


def finegrained_data(
    out: Path = typer.Option(..., "--out", help="Output folder."),
    seed: int = typer.Option(0, help="Scene generation seed."),
    size: int = typer.Option(48, help="Scene side in pixels."),
    n_train: int = typer.Option(400, "--n-train"),
    n_val: int = typer.Option(100, "--n-val"),
    n_test: int = typer.Option(200, "--n-test"),
    misleading: float = typer.Option(0.1, "--misleading", help="Fraction of misleading "
                                     "training images (wrong label, tiny or no garment)."),
) -> None:
    """Write the fine-grained demo (shirt / T-shirt / pullover / coat on textures) as
    OUT/{train,val,test}/ with images/, masks/, labels.csv, classes.txt, manifest.csv."""
    from densecal.data.finegrained import FineGrainedConfig, write_finegrained_dataset

    config = FineGrainedConfig(size=size, n_train=n_train, n_val=n_val, n_test=n_test,
                               misleading_fraction=misleading, seed=seed)
    for split, path in write_finegrained_dataset(out, config).items():
        typer.echo(f"{split:>5}: {path}")
