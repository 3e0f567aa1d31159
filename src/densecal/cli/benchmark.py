"""``densecal benchmark``: every method, same data, model and schedule, several seeds."""

from __future__ import annotations

from pathlib import Path

import typer

from densecal.cli.summary import run_line

__all__ = ["benchmark"]


def benchmark(
    methods: str | None = typer.Option(
        None, "--methods", help="Comma-separated methods; NAME+ts adds temperature scaling "
        "fitted on the validation split; NAME@FIELD=VALUE;FIELD=VALUE trains a variant "
        "(e.g. vls@vls_mix=0.6). Default: bce,bce+ts,ls,focal,mbls,svls,slp,aslp "
        "(binary) or ce,ls,focal,mbls,svls,vls (--num-classes >= 2)."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds 0..N-1 per method."),
    data: Path | None = typer.Option(None, "--data", help="Folder with train/, val/, test/ and "
                                                          "optional ood/ (default: demo scenes)."),
    out: Path = typer.Option(Path("densecal-benchmark"), "--out", help="Output folder."),
    epochs: int = typer.Option(120, "--epochs"),
    image_size: int = typer.Option(64, "--image-size"),
    model: str = typer.Option("unet-small", "--model"),
    num_classes: int = typer.Option(1, "--num-classes", help="1: binary maps; K >= 2: K-class "
                                    "label maps (e.g. 3 for `densecal data brain`)."),
    batch_size: int = typer.Option(16, "--batch-size"),
    lr: float = typer.Option(2e-3, "--lr"),
    fast: bool = typer.Option(False, "--fast", help="2 epochs at 32 px (a smoke test)."),
) -> None:
    """Train, calibrate and evaluate every method; resumable (finished runs are skipped)."""
    from densecal.apps.benchmark import BenchmarkSchedule, run_benchmark

    schedule = BenchmarkSchedule(model=model, epochs=2 if fast else epochs,
                                 image_size=32 if fast else image_size,
                                 aslp_warmup=1 if fast else 5, num_classes=num_classes,
                                 batch_size=batch_size, lr=lr)

    def report(method: str, seed: int, record: dict) -> None:
        typer.echo(run_line(method, seed, record, num_classes))

    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    result = run_benchmark(out, methods=chosen,
                           seeds=seeds, data=data, schedule=schedule, progress=False,
                           on_run=report)
    typer.echo(f"wrote benchmark.json, runs.csv, benchmark.md and figures to {out / 'report'} "
               f"({result['wall_time_s']} s)")
