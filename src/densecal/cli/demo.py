"""``densecal demo``: BCE vs ASLP on the bundled scenes, with a report."""

from __future__ import annotations

from pathlib import Path

import typer

from densecal.cli.summary import demo_line

__all__ = ["demo"]


def demo(
    out: Path = typer.Option(Path("densecal-demo"), "--out", help="Output folder."),
    fast: bool = typer.Option(False, "--fast", help="Tiny data and schedule (about a minute)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train BCE and ASLP on the demo scenes, evaluate on test and OOD, write a report."""
    from densecal.apps.demo import LABELS, run_demo

    result = run_demo(out, fast=fast, seed=seed)
    for method, splits in result["runs"].items():
        for split, r in splits.items():
            typer.echo(demo_line(LABELS[method], split, r))
    typer.echo(f"report: {out / 'report' / 'report.md'}  ({result['wall_time_s']} s)")
