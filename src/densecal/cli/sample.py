"""``densecal sample``: CAR samples for a folder of images (:mod:`densecal.apps.sample`)."""

from __future__ import annotations

from pathlib import Path

import typer

from densecal._deprecated import moved_names

__all__ = ["sample"]

__getattr__ = moved_names(__name__, {"write_samples": "densecal.apps.sample"})


def sample(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A CAR checkpoint (method car)."),
    data: Path = typer.Option(..., "--data", help="Folder of images or a folder dataset."),
    n: int = typer.Option(16, "--n", help="Samples per image."),
    out: Path = typer.Option(..., "--out", help="Output folder (one sub-folder per image)."),
    labels: bool = typer.Option(False, "--labels",
                                help="Store samples as uint8 argmax maps (n, H, W) instead of "
                                     "float16 probabilities (n, K, H, W)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the latent draws."),
) -> None:
    """Write F's probabilities and n CAR samples per image, with PNG previews."""
    from densecal.apps.sample import write_samples

    count = write_samples(checkpoint, data, n, out, labels=labels, seed=seed)
    typer.echo(f"wrote {n} samples for each of {count} images to {out}")
