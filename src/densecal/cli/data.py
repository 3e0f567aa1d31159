"""``densecal data ...``: write the bundled datasets as folders a user can open."""

from __future__ import annotations

from pathlib import Path

import typer

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
