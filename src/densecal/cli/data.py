"""``densecal data ...``: write the bundled datasets as folders a user can open."""

from __future__ import annotations

from pathlib import Path

import typer

from densecal.cli.data_ambiguous import ambiguous_data
from densecal.cli.overmap import finegrained_data
from densecal.cli.ud_data import coco_data, multilabel_data, voc_data
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
    from densecal.data import write_demo_dataset
    from densecal.demo import demo_data_config

    splits = write_demo_dataset(out, demo_data_config(fast=fast, seed=seed))
    for split, path in splits.items():
        typer.echo(f"{split:>5}: {path}")


def _split_list(value: str, option: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    if not items:
        raise input_error(option, "expected a comma-separated list, got nothing")
    return items


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
) -> None:
    """Write MNI152 brain slices (T1 + grey / white matter soft truth, seeded MR-like
    corruptions) as OUT/{train,val,test}/{images,masks,soft}/STEM.png|npy."""
    from densecal.data.brain import BrainSliceConfig, write_brain_dataset

    config = BrainSliceConfig(size=size, seed=seed, copies=copies,
                              axes=_split_list(axes, "--axes"), stride=stride, block=block,
                              gap=gap, noise=noise)
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
    from densecal.data.nifti import convert_nifti_folder

    path = convert_nifti_folder(data, out, axis=axis, size=size, skip_empty=skip_empty)
    typer.echo(f"slices: {path}")


app.command("ambiguous")(ambiguous_data)
app.command("finegrained")(finegrained_data)
app.command("multilabel")(multilabel_data)
app.command("voc")(voc_data)
app.command("coco")(coco_data)
