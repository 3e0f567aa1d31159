"""``densecal predict``: write probability maps for a folder of images."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["predict"]


def predict(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A densecal training checkpoint."),
    data: Path = typer.Option(..., "--data", help="Folder of images or a folder dataset."),
    out: Path = typer.Option(..., "--out", help="Output folder for the maps."),
    format: str = typer.Option("png", "--format", help="png (8-bit, value/255) or npy (float)."),
    batch_size: int = typer.Option(16, "--batch-size"),
) -> None:
    """Write one foreground-probability map per image, at the image's original size."""
    from densecal.apps.predict import predict_folder

    n = predict_folder(checkpoint, data, out, fmt=format, batch_size=batch_size)
    typer.echo(f"wrote {n} maps to {out}")
