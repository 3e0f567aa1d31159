"""``densecal train``: train a method on a folder dataset into a run folder."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["train"]


def train(
    method: str = typer.Option("bce", "--method", help="bce, ls, slp or aslp."),
    data: Path = typer.Option(..., "--data", help="Folder dataset of training image/mask pairs."),
    val_data: Path | None = typer.Option(None, "--val-data",
                                         help="Separate validation folder (else --val-fraction)."),
    val_fraction: float = typer.Option(0.2, "--val-fraction",
                                       help="Fraction of --data held out for validation."),
    model: str = typer.Option("unet-small", "--model", help="Network name."),
    epochs: int = typer.Option(30, "--epochs"),
    batch_size: int = typer.Option(16, "--batch-size"),
    image_size: int = typer.Option(96, "--image-size", help="Training resolution (multiple of 8)."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    seed: int = typer.Option(0, "--seed"),
    eps: float = typer.Option(0.1, "--eps", help="Label smoothing factor (ls)."),
    alpha: float = typer.Option(0.1, "--alpha", help="Fixed perturbation probability (slp)."),
    technique: str = typer.Option("hard_inversion", "--technique",
                                  help="hard_inversion, soft_inversion, moderation, "
                                       "moderation_noise (slp, aslp)."),
    augment: bool = typer.Option(True, "--augment/--no-augment",
                                 help="Random flip, border crop and rotation (ASLP recipe)."),
    num_workers: int = typer.Option(0, "--num-workers", help="DataLoader workers."),
    out: Path = typer.Option(Path("runs/run"), "--out", help="Run folder."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
) -> None:
    """Train a dense binary classifier; checkpoints, config and (ASLP) α table go to --out."""
    from densecal.methods import TrainConfig
    from densecal.methods import train as run_training

    config = TrainConfig(method=method, data=str(data),
                         val_data=str(val_data) if val_data else None,
                         val_fraction=val_fraction, model=model, epochs=epochs,
                         batch_size=batch_size, image_size=image_size, lr=lr, seed=seed, eps=eps,
                         alpha=alpha, technique=technique, augment=augment,
                         num_workers=num_workers)
    ckpt = run_training(config, out, resume=resume)
    typer.echo(f"checkpoint: {ckpt}")
