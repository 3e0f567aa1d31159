"""``densecal calibrate``: fit post-hoc temperature scaling for a trained checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["calibrate"]


def calibrate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A densecal training checkpoint."),
    data: Path = typer.Option(..., "--data", help="Held-out folder dataset (e.g. validation)."),
    out: Path | None = typer.Option(None, "--out",
                                    help="Calibrated checkpoint (default NAME-calibrated.ckpt)."),
    batch_size: int = typer.Option(16, "--batch-size"),
) -> None:
    """Fit one temperature T on held-out data (streamed NLL, T in [0.05, 20]) and write a
    checkpoint that predict and evaluate apply as sigmoid(logits / T)."""
    from densecal.apps.calibrate import calibrate_checkpoint

    result, path = calibrate_checkpoint(checkpoint, data, out, batch_size=batch_size)
    bound = " (at a bound of [0.05, 20])" if result.at_bound else ""
    typer.echo(f"T = {result.temperature:.4f}{bound}; NLL {result.nll_before:.4f} -> "
               f"{result.nll_after:.4f} over {result.n_pixels} pixels in {result.passes} passes")
    typer.echo(f"calibrated checkpoint: {path}")
