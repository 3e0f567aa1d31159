"""``densecal data ambiguous``: write the injected-ambiguity garment scenes (CAR, in miniature)."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["ambiguous_data"]


def ambiguous_data(
    out: Path = typer.Option(..., "--out", help="Output folder."),
    seed: int = typer.Option(0, help="Scene and flip seed."),
    size: int = typer.Option(48, help="Scene side in pixels."),
    n_train: int = typer.Option(400, help="Training scenes (flipped masks)."),
    n_val: int = typer.Option(50, help="Validation scenes (flipped masks)."),
    n_test: int = typer.Option(100, help="Test scenes (base masks; modes in ambiguity.json)."),
) -> None:
    """Write multi-garment scenes with whole-class label flips as
    OUT/{train,val,test}/{images,masks}/STEM.png + OUT/ambiguity.json."""
    from densecal.data.ambiguity import AmbiguityConfig, write_ambiguity_dataset

    config = AmbiguityConfig(size=size, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed)
    for split, path in write_ambiguity_dataset(out, config).items():
        typer.echo(f"{split:>5}: {path}")
