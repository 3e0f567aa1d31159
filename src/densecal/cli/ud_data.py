"""``densecal data multilabel``: multi-label garment scenes, and VOC / COCO conversion.

Command functions for the lead to register on ``densecal.cli.data.app``, e.g.
``app.command("multilabel")(multilabel_data)``.
"""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["coco_data", "multilabel_data", "voc_data"]


def multilabel_data(
    out: Path = typer.Option(Path("densecal-multilabel-data"), "--out", help="Output folder."),
    n_train: int = typer.Option(400, "--n-train", help="Training scenes."),
    n_val: int = typer.Option(100, "--n-val", help="Validation scenes."),
    n_test: int = typer.Option(200, "--n-test", help="Test scenes."),
    size: int = typer.Option(48, help="Scene side in pixels."),
    seed: int = typer.Option(0, help="Scene generation seed."),
    classes: str = typer.Option("default", help="Fashion-MNIST class ids (0..9) to draw "
                                "garments from, comma-separated; 'default' (T-shirt/top, "
                                "Trouser, Dress, Sandal, Bag, Ankle boot) or 'all'."),
) -> None:
    """Write multi-label garment scenes (2-4 Fashion-MNIST garments on a texture, "difficult"
    flags for small, occluded or low-contrast garments) as OUT/{train,val,test}/ classification
    folders (images/NAME.png, labels.csv, classes.txt)."""
    from densecal.data.multilabel import MULTILABEL_CLASSES, write_multilabel_scenes
    from densecal.errors import input_error

    named = {"default": list(MULTILABEL_CLASSES), "all": None}
    try:
        ids = named[classes] if classes in named else [int(c) for c in classes.split(",")]
    except ValueError:
        raise input_error("--classes", f"expected comma-separated integers, 'default' or 'all', "
                                       f"got {classes!r}") from None
    splits = write_multilabel_scenes(out, n_train=n_train, n_val=n_val, n_test=n_test,
                                     size=size, seed=seed, classes=ids)
    for split, path in splits.items():
        typer.echo(f"{split:>5}: {path}")


def voc_data(
    root: Path = typer.Option(..., "--root", help="The VOCdevkit/VOC2007 folder."),
    split: str = typer.Option("trainval", help="ImageSets/Main split: trainval or test."),
    out: Path = typer.Option(..., "--out", help="Output classification folder."),
) -> None:
    """Convert a VOC 2007 split to a classification folder (difficult labels as 2)."""
    from densecal.data.voc import convert_voc

    typer.echo(str(convert_voc(root, split, out)))


def coco_data(
    annotations: Path = typer.Option(..., "--annotations", help="instances_*2014.json."),
    images: Path = typer.Option(..., "--images", help="Folder of the split's images."),
    out: Path = typer.Option(..., "--out", help="Output classification folder."),
) -> None:
    """Convert a COCO 2014 split to an 80-class multi-label classification folder."""
    from densecal.data.coco import convert_coco

    typer.echo(str(convert_coco(annotations, images, out)))
