"""``densecal data ...``: write the bundled datasets as folders a user can open, and convert
public datasets (NIfTI volumes, VOC 2007, COCO 2014) to densecal's folder layouts."""

from __future__ import annotations

from pathlib import Path

import typer

from densecal.errors import input_error

__all__ = ["app"]

app = typer.Typer(help="Write bundled datasets as folder datasets.", no_args_is_help=True)


@app.command("demo")
def demo_data(
    out: Path = typer.Option(Path("densecal-demo-data"), "--out", help="Output folder."),
    seed: int = typer.Option(0, help="Scene generation seed."),
    fast: bool = typer.Option(False, help="The small configuration used by `demo --fast`."),
) -> None:
    """Write the demo scenes (Fashion-MNIST garments on real textures, exact soft masks) as
    OUT/{train,val,test,ood}/{images,masks}/NAME.png."""
    from densecal.apps.demo import demo_data_config
    from densecal.data import write_demo_dataset

    splits = write_demo_dataset(out, demo_data_config(fast=fast, seed=seed))
    for split, path in splits.items():
        typer.echo(f"{split:>5}: {path}")


def _split_list(value: str, option: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    if not items:
        raise input_error(option, "expected a comma-separated list, got nothing")
    return items


def _class_ids(value: str, named: dict[str, list[int] | None]) -> list[int] | None:
    """``--classes``: a name of ``named`` or comma-separated Fashion-MNIST ids."""
    if value in named:
        return named[value]
    try:
        return [int(c) for c in value.split(",")]
    except ValueError:
        raise input_error("--classes", f"expected comma-separated integers or one of "
                                       f"{', '.join(named)}, got {value!r}") from None


@app.command("brain")
def brain_data(
    out: Path = typer.Option(..., "--out", help="Output folder (new, empty, or a previous "
                                                "brain dataset, which is replaced)."),
    size: int = typer.Option(64, help="Side of the square slices in pixels."),
    seed: int = typer.Option(0, help="Seed of the split pattern and the corruptions."),
    copies: int = typer.Option(2, help="Differently corrupted copies of each training slice."),
    axes: str = typer.Option("axial,coronal,sagittal", help="Comma-separated slicing planes."),
    stride: int = typer.Option(2, help="Distance in mm between used slices."),
    block: int = typer.Option(16, help="Length in mm of the contiguous blocks given to a split."),
    gap: int = typer.Option(4, help="Mm dropped at each boundary between splits."),
    noise: str = typer.Option("rician", help="Noise model: rician or gaussian."),
    rater: str = typer.Option("none", help="none (masks: argmax of the partial-volume truth) or "
                                           "dark-gm (a simulated rater who calls dark grey "
                                           "matter background; soft: over raters)."),
) -> None:
    """Write MNI152 brain slices (T1 + grey / white matter soft truth, seeded MR-like
    corruptions) as OUT/{train,val,test}/{images,masks,soft}/STEM.png|npy."""
    from densecal.data.convert.brain import BrainSliceConfig, write_brain_dataset

    config = BrainSliceConfig(size=size, seed=seed, copies=copies,
                              axes=_split_list(axes, "--axes"), stride=stride, block=block,
                              gap=gap, noise=noise, rater=rater)
    for split, path in write_brain_dataset(out, config).items():
        typer.echo(f"{split:>5}: {path}")


@app.command("nifti")
def nifti_data(
    data: Path = typer.Option(..., "--data", help="Folder with images/ and labels/ (or masks/) "
                                                  "holding NAME.nii[.gz] volumes."),
    out: Path = typer.Option(..., "--out", help="Output folder dataset (new, empty, or a "
                                                "previous conversion, which is replaced)."),
    axis: str = typer.Option("axial", help="Slicing plane: axial, coronal or sagittal."),
    size: int | None = typer.Option(None, help="Pad slices to squares and area-average them "
                                               "to SIZE x SIZE (default: keep the voxel grid)."),
    skip_empty: bool = typer.Option(False, help="Leave out slices without foreground."),
) -> None:
    """Slice NIfTI volumes into a 2-D multi-class folder dataset
    (OUT/{images,masks[,soft]}/NAME__<x|y|z><index>.png|npy)."""
    from densecal.data.convert.nifti import convert_nifti_folder

    path = convert_nifti_folder(data, out, axis=axis, size=size, skip_empty=skip_empty)
    typer.echo(f"slices: {path}")


@app.command("ambiguous")
def ambiguous_data(
    out: Path = typer.Option(..., "--out", help="Output folder."),
    seed: int = typer.Option(0, help="Scene and flip seed."),
    size: int = typer.Option(48, help="Scene side in pixels."),
    n_train: int = typer.Option(400, help="Training scenes."),
    n_val: int = typer.Option(50, help="Validation scenes."),
    n_test: int = typer.Option(100, help="Test scenes (base masks; modes in ambiguity.json)."),
    frozen_flips: bool = typer.Option(False, "--frozen-flips/--redrawn-flips",
                                      help="Write train/val masks flipped once (densecal 0.1) "
                                           "instead of base masks whose flips training redraws "
                                           "at every load (CARSSS)."),
) -> None:
    """Write multi-garment scenes with whole-class label flips as
    OUT/{train,val,test}/{images,masks}/STEM.png + OUT/ambiguity.json."""
    from densecal.data.synthetic.ambiguity import AmbiguityConfig, write_ambiguity_dataset

    config = AmbiguityConfig(size=size, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed,
                             frozen_flips=frozen_flips)
    for split, path in write_ambiguity_dataset(out, config).items():
        typer.echo(f"{split:>5}: {path}")


@app.command("finegrained")
def finegrained_data(
    out: Path = typer.Option(..., "--out", help="Output folder."),
    seed: int = typer.Option(0, help="Scene generation seed."),
    size: int = typer.Option(48, help="Scene side in pixels."),
    n_train: int = typer.Option(400, "--n-train"),
    n_val: int = typer.Option(100, "--n-val"),
    n_test: int = typer.Option(200, "--n-test"),
    misleading: float = typer.Option(0.1, "--misleading", help="Fraction of misleading "
                                     "training images (wrong label, tiny or no garment)."),
    classes: str = typer.Option("confusable", help="'confusable' (shirt, T-shirt/top, "
                                "pullover, coat), 'distinct' (T-shirt/top, trouser, bag, ankle "
                                "boot) or comma-separated Fashion-MNIST ids (0..9)."),
    n_seg: int = typer.Option(0, "--n-seg", help="Scenes of a clean segmenter split OUT/seg "
                              "(0: none), with tiny garments and empty scenes."),
    seg_tiny: float = typer.Option(0.2, "--seg-tiny", help="Fraction of seg scenes with a "
                                   "tiny garment."),
    seg_empty: float = typer.Option(0.2, "--seg-empty", help="Fraction of seg scenes with no "
                                    "garment (empty mask)."),
) -> None:
    """Write the fine-grained demo (garments on textures, misleading training images) as
    OUT/{train,val,test[,seg]}/ with images/, masks/, labels.csv, classes.txt, manifest.csv."""
    from densecal.data.synthetic.finegrained import (
        CONFUSABLE_CLASSES,
        DISTINCT_CLASSES,
        FineGrainedConfig,
        write_finegrained_dataset,
    )

    ids = _class_ids(classes, {"confusable": list(CONFUSABLE_CLASSES),
                               "distinct": list(DISTINCT_CLASSES)})
    config = FineGrainedConfig(size=size, n_train=n_train, n_val=n_val, n_test=n_test,
                               misleading_fraction=misleading, classes=tuple(ids or ()),
                               n_seg=n_seg, seg_tiny_fraction=seg_tiny,
                               seg_empty_fraction=seg_empty, seed=seed)
    for split, path in write_finegrained_dataset(out, config).items():
        typer.echo(f"{split:>5}: {path}")


@app.command("multilabel")
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
    from densecal.data.synthetic.multilabel import MULTILABEL_CLASSES, write_multilabel_scenes

    ids = _class_ids(classes, {"default": list(MULTILABEL_CLASSES), "all": None})
    splits = write_multilabel_scenes(out, n_train=n_train, n_val=n_val, n_test=n_test,
                                     size=size, seed=seed, classes=ids)
    for split, path in splits.items():
        typer.echo(f"{split:>5}: {path}")


@app.command("voc")
def voc_data(
    root: Path = typer.Option(..., "--root", help="The VOCdevkit/VOC2007 folder."),
    split: str = typer.Option("trainval", help="ImageSets/Main split: trainval or test."),
    out: Path = typer.Option(..., "--out", help="Output classification folder."),
) -> None:
    """Convert a VOC 2007 split to a classification folder (difficult labels as 2)."""
    from densecal.data.convert.voc import convert_voc

    typer.echo(str(convert_voc(root, split, out)))


@app.command("coco")
def coco_data(
    annotations: Path = typer.Option(..., "--annotations", help="instances_*2014.json."),
    images: Path = typer.Option(..., "--images", help="Folder of the split's images."),
    out: Path = typer.Option(..., "--out", help="Output classification folder."),
) -> None:
    """Convert a COCO 2014 split to an 80-class multi-label classification folder."""
    from densecal.data.convert.coco import convert_coco

    typer.echo(str(convert_coco(annotations, images, out)))
